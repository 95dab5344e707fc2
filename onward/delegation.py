"""Sub-agents: an agent run started by another run (or by your own workflow) as its child.

The ``delegate`` tool of :class:`~onward.workflows.AgentWorkflow` and workflow
authors' own code share what is here: the child's input (a slice of the
parent's remaining budget, the parent's tenant, approval settings and
workspace), how its usage rolls up into the parent's, and what its end means
for the parent's model. The pure parts are plain functions; :func:`delegate`
and :func:`start_delegate` run inside a Temporal workflow only.

A child is a real ``AgentWorkflow`` child workflow: it has its own id, status,
step log and budget (``status.budget``), and is cancelled with its parent
(``ParentClosePolicy.REQUEST_CANCEL``, and child workflow cancellation when the
parent stops waiting for it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, FailureError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from onward import budget as budgets
from onward.contracts import (
    AGENT_WORKFLOW,
    AgentInput,
    AgentResult,
    Budget,
    RunUsage,
    ScriptTurn,
    ToolCall,
    ToolOutcome,
    ToolSpec,
)
from onward.errors import format_validation_error
from onward.final_answer import FINAL_ANSWER
from onward.markdown import escape_markdown
from onward.tuning import WORKFLOW_TASK_TIMEOUT

__all__ = [
    "DELEGATE",
    "DELEGATE_BEFORE_V5",
    "DELEGATE_PATCH",
    "ID_TAKEN",
    "MAX_DELEGATION_DEPTH",
    "DelegateArgs",
    "check_delegate",
    "child_budget",
    "child_id",
    "child_input",
    "delegable",
    "delegate",
    "delegate_spec",
    "failure_message",
    "failure_outcome",
    "is_sub_agent",
    "outcome_of",
    "roll_up",
    "start_delegate",
    "started_by",
]

DELEGATE_PATCH = "delegate"
"""Runs that name ``delegate`` in ``tools`` offer it; runs begun before refused the name."""

MAX_DELEGATION_DEPTH = 3
"""A run at this depth (a sub-agent of a sub-agent of a sub-agent) may not delegate."""


class DelegateArgs(BaseModel):
    """Arguments of the ``delegate`` tool."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="the sub-agent's task, self-contained")
    model: str | None = Field(default=None, description="the sub-agent's model; default: yours")
    tools: list[str] | None = Field(
        default=None, description="the sub-agent's tools (a subset of yours); default: yours"
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "the sub-agent's token budget; default: an equal share of what you have left "
            "(after the max_tokens of the sub-agents you start with it)"
        ),
    )
    script: SkipJsonSchema[list[ScriptTurn] | None] = Field(
        default=None, description="the scripted model's turns (tests and demos; not offered)"
    )


DELEGATE = ToolSpec(
    name="delegate",
    description=(
        "Hand a self-contained task to a sub-agent and get its final answer. The sub-agent "
        "works in your workspace with your tools (or those you name) and spends from your "
        "remaining budget: the sub-agents you start in one turn share what you have left."
    ),
    parameters=DelegateArgs.model_json_schema(),
)


def _as_before_v5(parameters: dict[str, Any]) -> dict[str, Any]:
    properties = dict(parameters["properties"])
    properties["max_tokens"] = {
        **properties["max_tokens"],
        "description": "the sub-agent's token budget; default: all you have left",
    }
    return {**parameters, "properties": properties}


DELEGATE_BEFORE_V5 = ToolSpec(
    name="delegate",
    description=(
        "Hand a self-contained task to a sub-agent and get its final answer. The sub-agent "
        "works in your workspace with your tools (or those you name) and spends from your "
        "remaining budget (all of it, or max_tokens)."
    ),
    parameters=_as_before_v5(DelegateArgs.model_json_schema()),
)
"""``delegate`` as runs begun before RUN_VERSION 5 offer it, word for word: a run keeps
its tool specs in the store under their hash (``tool_specs_key``) from its first call
and names them by it after, so a run in flight must be offered the same text. (Since
RUN_VERSION 2 its "all you have left" was wrong: sub-agents of one turn share it.)"""


def delegate_spec(run_version: int) -> ToolSpec:
    """The ``delegate`` tool a run begun with ``run_version`` offers."""
    return DELEGATE if run_version >= 5 else DELEGATE_BEFORE_V5


def child_budget(
    budget: Budget,
    usage: RunUsage,
    elapsed_s: float,
    max_tokens: int | None = None,
    lent: Iterable[Budget] = (),
    later: Sequence[int | None] = (),
) -> Budget:
    """The child's limits: what the parent has left of each (never more), ``max_tokens`` narrower.

    ``lent`` are the slices of the parent's children still running: they are
    spoken for, so children started side by side never get more than the parent
    has between them. ``later`` are the sub-agents the same turn starts after
    this one (each one's ``max_tokens``, or None): what is left is shared, not
    taken by the first. Tokens: a sub-agent naming ``max_tokens`` gets it (if
    left); the others split what the named ones leave. Tool calls and cost: an
    equal part each. The child stops at its slice (``on_exceeded="stop"``): its
    parent, not a person, decides what comes next. Steps are the parent's own
    (children's steps are theirs), so a child may take as many as the parent has left.
    """
    running = list(lent)
    parts = 1 + len(later)

    def left(limit: float | None, used: float, name: str | None) -> float | None:
        if limit is None:
            return None
        spoken_for = sum(getattr(slice_, name) or 0 for slice_ in running) if name else 0
        return max(limit - used - spoken_for, 0)

    def part(value: float | None) -> float | None:
        return None if value is None else value / parts

    tokens = left(budget.max_tokens, usage.total_tokens, "max_tokens")
    if max_tokens is not None:
        tokens = max_tokens if tokens is None else min(tokens, max_tokens)
    elif tokens is not None:
        named = sum(asked for asked in later if asked is not None)
        tokens = max(tokens - named, 0) / (1 + sum(asked is None for asked in later))
    duration = budgets.remaining_s(budget, elapsed_s)
    tool_calls = part(left(budget.max_tool_calls, usage.tool_calls, "max_tool_calls"))
    steps = left(budget.max_steps, usage.steps, None)  # children's steps are not the parent's
    cost = part(left(budget.max_cost_usd, usage.cost_usd, "max_cost_usd"))
    return Budget(
        max_tokens=None if tokens is None else int(tokens),
        max_tool_calls=None if tool_calls is None else int(tool_calls),
        # A positive limit is required; a parent out of time starts no child anyway.
        max_duration_s=None if duration is None else max(duration, 0.001),
        max_cost_usd=None if cost is None else round(cost, 12),
        max_steps=None if steps is None else int(steps),
        on_exceeded="stop",
    )


def delegable(tools: Iterable[str]) -> list[str]:
    """The tools of a run that its sub-agents may be given (all of them by default).

    Not ``final_answer``: the run's own ``output_schema`` adds it, no worker has it, and
    a sub-agent answers in text.
    """
    return [name for name in tools if name != FINAL_ANSWER]


def check_delegate(
    call: ToolCall, depth: int, offered: Collection[str], parent_model: str
) -> str | None:
    """Why a ``delegate`` call is refused before anything starts, or None.

    The run's reader (its history) applies the same rule, so the step log read
    from the history says what the run's own log says.
    """
    try:
        args = DelegateArgs.model_validate(call.arguments)
    except ValidationError as err:
        return format_validation_error(call.name, err)
    if depth >= MAX_DELEGATION_DEPTH:
        return (
            f"delegate: a sub-agent at depth {depth} may not delegate further "
            f"(the limit is {MAX_DELEGATION_DEPTH})"
        )
    try:  # what the child's input would reject: a bad model, a script for a real model
        AgentInput(prompt=args.prompt, model=args.model or parent_model, script=args.script)
    except ValidationError as err:
        return format_validation_error(call.name, err)
    foreign = [name for name in args.tools or [] if name not in offered]
    if foreign:
        return (
            f"delegate: tools {', '.join(repr(name) for name in foreign)} are not yours "
            f"(yours: {', '.join(offered)})"
        )
    return None


def child_input(
    parent: AgentInput,
    args: DelegateArgs,
    budget: Budget,
    tools: list[str],
    workspace: str | None,
) -> AgentInput:
    """The child's input: the task, a budget slice, and the parent's scope.

    The child keeps the parent's tenant, memory scope, approval settings, compaction,
    tool-result clearing and workspace; the parent's pricing, settings and fallback models
    only when it runs the parent's model. It is one level deeper (``delegation_depth``); its webhook
    is its parent's business.
    """
    model = args.model or parent.model
    same_model = model == parent.model
    approve = [name for name in parent.approve_tools or [] if name in tools]
    return AgentInput(
        prompt=args.prompt,
        model=model,
        fallback_models=parent.fallback_models if same_model else None,
        script=args.script,
        tools=tools,
        budget=budget,
        pricing=parent.pricing if same_model else None,
        settings=parent.settings if same_model else None,
        tenant=parent.tenant,
        memory_scope=parent.memory_scope,
        approve_tools=approve or None,
        approval_timeout_s=parent.approval_timeout_s,
        on_approval_timeout=parent.on_approval_timeout,
        context=parent.context,
        clear_tool_results=parent.clear_tool_results,
        delegation_depth=parent.delegation_depth + 1,
        workspace=workspace,
    )


def child_id(parent_id: str, step: int, call_id: str) -> str:
    """The child's workflow id: its parent's, the step and the call (unique in the chain)."""
    return f"{parent_id}{_child_suffix(step, call_id)}"


def started_by(workflow_id: str, step: int, call_id: str) -> bool:
    """Whether the child ``workflow_id`` was started by delegate call ``call_id`` of ``step``."""
    return workflow_id.endswith(_child_suffix(step, call_id))


def is_sub_agent(workflow_id: str, parent_id: str | None) -> bool:
    """Whether a run is a ``delegate`` call's sub-agent (its usage is in its parent's)."""
    return parent_id is not None and workflow_id.startswith(f"{parent_id}.delegate-")


def _child_suffix(step: int, call_id: str) -> str:
    return f".delegate-{step}-{call_id}"


def roll_up(usage: RunUsage, child: RunUsage) -> None:
    """Add a child's usage to its parent's (steps and duration stay the parent's own)."""
    usage.input_tokens += child.input_tokens
    usage.output_tokens += child.output_tokens
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    usage.model_calls += child.model_calls
    usage.tool_calls += child.tool_calls
    usage.cost_usd = round(usage.cost_usd + child.cost_usd, 12)
    usage.cost_known = usage.cost_known and child.cost_known
    usage.tokens_estimated = usage.tokens_estimated or child.tokens_estimated
    # Its cached input is in the input tokens just added, its discount in the cost.
    usage.cached_input_tokens += child.cached_input_tokens
    usage.cache_write_tokens += child.cache_write_tokens
    usage.cache_saved_usd = round(usage.cache_saved_usd + child.cache_saved_usd, 12)


def outcome_of(result: AgentResult, workflow_id: str) -> ToolOutcome:
    """What the parent's model reads: the child's answer, or a tool error saying how it ended."""
    if result.status == "completed":
        return ToolOutcome(content=result.output or "")
    error = f"sub-agent {workflow_id} ended {result.status}"
    if result.reason:
        error += f": {result.reason}"
    if result.output:
        error += f"; its answer so far: {result.output}"
    return ToolOutcome(error=error)


ID_TAKEN = "its workflow id is taken"
"""Why a child that could not start failed (another run has its id)."""


def failure_outcome(workflow_id: str, message: str) -> ToolOutcome:
    """A child that failed as a workflow (bad input, say): a tool error for the parent."""
    return ToolOutcome(error=f"sub-agent {workflow_id} failed: {message}")


def failure_message(err: ChildWorkflowError) -> str:
    """The child's own failure message, as its history's failure event gives it."""
    cause: BaseException = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    message = cause.message if isinstance(cause, FailureError) else str(cause)
    return message or type(cause).__name__


async def start_delegate(
    agent_input: AgentInput,
    id: str,
    task_queue: str | None = None,
    summary: str | None = None,
) -> ChildWorkflowHandle[object, AgentResult]:
    """Start ``agent_input`` as a child ``AgentWorkflow`` of the calling workflow.

    Closing the parent requests the child's cancellation (``REQUEST_CANCEL``);
    cancelling the task that awaits the handle cancels the child too.
    """
    return await workflow.start_child_workflow(
        AGENT_WORKFLOW,
        agent_input,
        id=id,
        task_queue=task_queue,
        result_type=AgentResult,
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        # Rendered as markdown by the Web UI, and the model's own words: escaped, as
        # a run's prompt is (``**urgent** [click](https://...)`` is no live link).
        static_summary=escape_markdown(summary) if summary else None,
        task_timeout=WORKFLOW_TASK_TIMEOUT,  # as every run's: see onward.tuning
    )


async def delegate(
    prompt: str,
    *,
    id: str,
    model: str = "scripted",
    tools: list[str] | None = None,
    budget: Budget | None = None,
    max_tokens: int | None = None,
    tenant: str | None = None,
    script: list[ScriptTurn] | None = None,
    task_queue: str | None = None,
) -> AgentResult:
    """Run an agent as a child of the calling workflow and return its result (workflow code only).

    For workflow authors: ``await delegate("Summarise the report", id=..., budget=...)``
    inside your own ``@workflow.run``. ``max_tokens`` narrows ``budget``. The child is
    cancelled with your workflow. Its files go to the workspace of your workflow's root.
    """
    limits = budget or Budget()
    if max_tokens is not None:
        narrower = max_tokens if limits.max_tokens is None else min(limits.max_tokens, max_tokens)
        limits = limits.model_copy(update={"max_tokens": narrower})
    agent_input = AgentInput(
        prompt=prompt, model=model, tools=tools, budget=limits, tenant=tenant, script=script
    )
    handle = await start_delegate(agent_input, id, task_queue=task_queue)
    return await handle
