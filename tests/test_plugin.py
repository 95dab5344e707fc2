"""``OnwardPlugin`` in a user's own Temporal application, on the real dev server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from greeting_workflow import GreetingWorkflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import onward.plugin
from onward import OnwardPlugin, search_attributes
from onward.activities.tools import tool
from onward.contracts import AgentInput
from onward.workflows import AgentWorkflow


@tool
def shout(text: str) -> str:
    """Say it loudly.

    Args:
        text: what to say.
    """
    return text.upper() + "!"


async def test_an_agent_runs_on_a_users_worker_beside_their_own_workflow(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = env.client.service_client.config.target_host
    plugin = OnwardPlugin(tools=[shout], workspace=tmp_path)
    # No data_converter and no Onward worker: the plugin brings both.
    client = await Client.connect(target, plugins=[plugin])
    queue = f"mine-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[GreetingWorkflow]):
        greeting = await client.execute_workflow(
            GreetingWorkflow.run, "ada", id=f"greet-{queue}", task_queue=queue
        )
        agent = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(
                {
                    "prompt": "shout it",
                    "tools": ["shout", "calculator"],
                    "script": [
                        {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
                        {"text": "done"},
                    ],
                }
            ),
            id=f"agent-{queue}",
            task_queue=queue,
        )
        result = await agent.result()
        described = await agent.describe()

    assert greeting == "hello ada"
    assert result.status == "completed", result.reason
    assert result.output == "done"
    [call] = result.steps[0].tool_calls
    assert (call.name, call.result) == ("shout", "HI!")
    # The plugin registered Onward's search attributes on worker start, and runs set them.
    assert described.typed_search_attributes.get(search_attributes.STATUS) == "completed"
    assert "shout" in plugin.registry.names()


def test_tools_and_a_registry_are_not_both_taken(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tools= or registry="):
        OnwardPlugin(tools=[shout], registry=OnwardPlugin().registry, workspace=tmp_path)


@pytest.mark.parametrize(("value", "sandboxed"), [(None, False), ("1", True), ("off", False)])
def test_onwards_workflows_run_in_the_sandbox_only_when_asked(
    value: str | None, sandboxed: bool
) -> None:
    # Read at import, so asked in a fresh interpreter; the tests themselves run with "1".
    env = {k: v for k, v in os.environ.items() if k != "ONWARD_WORKFLOW_SANDBOX"}
    if value is not None:
        env["ONWARD_WORKFLOW_SANDBOX"] = value
    script = (
        "from temporalio import workflow\n"
        "from onward.workflows import AgentWorkflow\n"
        "from onward.workflows.session import SessionWorkflow\n"
        "print([workflow._Definition.must_from_class(c).sandboxed"
        " for c in (AgentWorkflow, SessionWorkflow)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str([sandboxed, sandboxed])


async def test_workers_sharing_a_plugin_wait_for_one_registration(
    env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    answers = [["OnwardStatus"], None]  # first only some (a refusal), then the server's

    async def registering(client: Client, namespace: str) -> list[str]:
        calls.append(namespace)
        await asyncio.sleep(0.05)  # the others ask meanwhile
        answer = answers.pop(0)
        return answer if answer is not None else await registered(client, namespace)

    registered = onward.plugin.ensure_search_attributes
    monkeypatch.setattr(onward.plugin, "ensure_search_attributes", registering)
    plugin = OnwardPlugin(workspace=tmp_path)

    async def worker_start() -> None:
        await plugin.register_search_attributes(env.client)
        assert len(answers) == 1  # none went on before the registration was done

    # Three workers at once: one registration, which got only some, so the next tries again.
    await asyncio.gather(*(worker_start() for _ in range(3)))
    assert calls == ["default"]
    await plugin.register_search_attributes(env.client)
    await plugin.register_search_attributes(env.client)  # all of them: not again
    assert calls == ["default", "default"]
