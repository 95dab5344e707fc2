"""What only a worker can judge in an agent's input: its tools and its model's provider.

A client validates an ``AgentInput`` with pydantic, but the tools a run may
name and the providers it may use are the worker's (``ONWARD_TOOLS``, keys in
its environment). ``AgentWorkflow`` fails a run at once on these problems;
``InputCheckWorkflow`` asks a worker the same before a schedule is created, so
a schedule naming a tool its workers lack is refused when it is made, not at
each time it comes. The messages are built here, for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from onward.contracts import AgentInput, InputProblem, WorkerDescription, provider_of
from onward.delegation import DELEGATE
from onward.final_answer import FINAL_ANSWER
from onward.tool_pipeline import unknown_approve_tools
from onward.workflow_tools import WORKFLOW_TOOLS

__all__ = [
    "WORKSPACE_PROBLEM",
    "problems",
    "unknown_approve_tools_problem",
    "unknown_provider_problems",
    "unknown_tools_problem",
    "worker_tools_asked",
]

WORKSPACE_PROBLEM = InputProblem(
    field="workspace",
    message="only a sub-agent names a workspace (its parent's or its root run's); leave it out",
)


def worker_tools_asked(tools: Sequence[str] | None, offer_delegate: bool) -> list[str] | None:
    """The tools a run asks its worker for: those the workflow does not run itself."""
    inside = {*WORKFLOW_TOOLS, *([DELEGATE.name] if offer_delegate else [])}
    return None if tools is None else [name for name in tools if name not in inside]


def unknown_tools_problem(unknown: Iterable[str], available: Iterable[str]) -> InputProblem:
    """Tools the worker lacks, with what it and the workflow have."""
    return InputProblem(
        field="tools",
        message=f"unknown tool(s) {', '.join(repr(name) for name in unknown)}; this worker "
        f"has: {', '.join(available)}; and the workflow itself: "
        f"{', '.join([*WORKFLOW_TOOLS, DELEGATE.name])}",
    )


def unknown_provider_problems(agent: AgentInput, providers: Sequence[str]) -> list[InputProblem]:
    """The run's model and fallback models whose provider the worker has not got
    (none when the worker names no providers: one from before it did)."""
    models = {"model": agent.model}
    for position, fallback in enumerate(agent.fallback_models or ()):
        models[f"fallback_models.{position}"] = fallback
    return [
        InputProblem(
            field=field,
            message=f"unknown model provider {provider_of(model)!r} "
            f"(this worker has: {', '.join(providers)})",
        )
        for field, model in models.items()
        if providers and provider_of(model) not in providers
    ]


def unknown_approve_tools_problem(names: Iterable[str], tools: Iterable[str]) -> InputProblem:
    """``approve_tools`` naming tools the run does not have."""
    return InputProblem(
        field="approve_tools",
        message=f"{', '.join(repr(name) for name in names)} not among the run's tools "
        f"({', '.join(tools)})",
    )


def problems(agent: AgentInput, description: WorkerDescription) -> list[InputProblem]:
    """What a run of ``agent``, begun by a client, would fail on at once on this worker.

    ``description`` is the worker's answer to ``worker_tools_asked(agent.tools, True)``:
    a run begun today offers ``delegate`` when it names it.
    """
    found: list[InputProblem] = []
    if description.unknown:
        found.append(unknown_tools_problem(description.unknown, description.available))
    unknown = unknown_provider_problems(agent, description.providers)
    found += unknown
    unusable = description.unusable_providers.get(provider_of(agent.model))
    # Each model call would fail; with fallback_models the run goes on with them.
    if not unknown and unusable is not None and not agent.fallback_models:
        found.append(InputProblem(field="model", message=unusable))
    if agent.workspace is not None:  # a client's run is nobody's sub-agent
        found.append(WORKSPACE_PROBLEM)
    asked = agent.tools
    tools = [spec.name for spec in description.tools]
    tools += [name for name in WORKFLOW_TOOLS if asked is None or name in asked]
    tools += [DELEGATE.name] if asked is not None and DELEGATE.name in asked else []
    tools += [FINAL_ANSWER] if agent.output_schema is not None else []
    unapprovable = [  # an unknown tool is said once, above
        name
        for name in unknown_approve_tools(agent.approve_tools or [], tools)
        if name not in description.unknown
    ]
    if unapprovable:
        found.append(unknown_approve_tools_problem(unapprovable, tools))
    return found
