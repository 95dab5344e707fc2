"""Sub-agents: the ``delegate`` tool runs a child AgentWorkflow on a slice of its budget."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from delegating_workflow import FanOut
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from conftest import (
    RunningWorker,
    activity_running,
    eventually,
    model_inputs,
    run_onward,
)
from onward.activities import tool_calls
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.contracts import (
    RUN_VERSION,
    AgentInput,
    AgentResult,
    AgentStatus,
    Budget,
    CancelRequest,
    ModelRequest,
    PendingApproval,
    RunUsage,
    ScriptTurn,
    StepRecord,
    ToolCall,
    ToolCallRecord,
    tool_specs_key,
)
from onward.delegation import (
    MAX_DELEGATION_DEPTH,
    DelegateArgs,
    check_delegate,
    child_budget,
    child_input,
    roll_up,
)
from onward.errors import NoWorker, RequestRejected
from onward.markdown import escape_markdown
from onward.starter.calls import CallPairing
from onward.starter.history import REQUEST_TYPES, RESULT_TYPES, reconstruct
from onward.starter.render import status_lines
from onward.starter.report import report_query
from onward.starter.trace import read_history
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.worker import WorkerSettings, build_worker
from onward.workflows import AgentWorkflow

PRICING = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
USAGE = {"input_tokens": 100, "output_tokens": 20}


def calc(expression: str, delay_s: float = 0.0) -> dict[str, Any]:
    return {
        "text": f"computing {expression}",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "usage": USAGE,
        "delay_s": delay_s,
    }


def delegating(**arguments: Any) -> dict[str, Any]:
    """A parent turn that delegates with ``arguments``."""
    return {
        "text": "handing it over",
        "tool_calls": [{"name": "delegate", "arguments": arguments}],
        "usage": USAGE,
    }


async def assert_history_tells_the_same(handle: WorkflowHandle[Any, Any], result: Any) -> None:
    """The parent's history alone gives its delegate calls as its own step log does."""
    rebuilt = reconstruct([event async for event in handle.fetch_history_events()])
    fields = ("id", "name", "result", "error", "status", "child_id")

    def calls(steps: list[Any]) -> list[dict[str, Any]]:
        return [call.model_dump(include=set(fields)) for step in steps for call in step.tool_calls]

    assert calls(rebuilt.step_log) == calls(result.steps)


def child_of(result: AgentResult) -> str:
    call = result.steps[0].tool_calls[0]
    assert call.name == "delegate" and call.child_id is not None
    return call.child_id


async def child_result(client: Client, child_id: str) -> AgentResult:
    handle: WorkflowHandle[Any, AgentResult] = client.get_workflow_handle(
        child_id, result_type=AgentResult
    )
    return await handle.result()


# -- pure rules ------------------------------------------------------------------------


def test_the_child_budget_is_what_the_parent_has_left_never_more() -> None:
    budget = Budget(max_tokens=1000, max_tool_calls=5, max_cost_usd=1.0, max_duration_s=60)
    used = RunUsage(total_tokens=120, tool_calls=1, cost_usd=0.25, steps=1)
    whole = child_budget(budget, used, elapsed_s=10, max_tokens=None)
    assert (whole.max_tokens, whole.max_tool_calls, whole.max_cost_usd) == (880, 4, 0.75)
    assert whole.max_duration_s == 50 and whole.on_exceeded == "stop"
    assert child_budget(budget, used, 10, max_tokens=300).max_tokens == 300
    assert child_budget(budget, used, 10, max_tokens=5000).max_tokens == 880  # never more
    assert child_budget(Budget(), used, 10, max_tokens=None) == Budget(on_exceeded="stop")
    assert child_budget(Budget(), used, 10, max_tokens=300).max_tokens == 300
    # Children side by side: what running children were lent is spoken for.
    first = child_budget(budget, used, 10, max_tokens=500)
    second = child_budget(budget, used, 10, max_tokens=None, lent=[first])
    assert (second.max_tokens, second.max_tool_calls, second.max_cost_usd) == (380, 0, 0)
    assert second.max_steps == whole.max_steps


def test_usage_rolls_up_exactly() -> None:
    parent = RunUsage(input_tokens=200, output_tokens=40, total_tokens=240, model_calls=2)
    parent.tool_calls, parent.cost_usd, parent.steps = 1, 0.00028, 2
    child = RunUsage(input_tokens=300, output_tokens=60, total_tokens=360, model_calls=3)
    child.tool_calls, child.cost_usd, child.steps, child.cost_known = 2, 0.00042, 3, False
    roll_up(parent, child)
    assert (parent.input_tokens, parent.output_tokens, parent.total_tokens) == (500, 100, 600)
    assert (parent.model_calls, parent.tool_calls, parent.steps) == (5, 3, 2)
    assert parent.cost_usd == 0.0007 and parent.cost_known is False
    parent.cached_input_tokens, parent.cache_write_tokens, parent.cache_saved_usd = 50, 0, 0.00004
    child.cached_input_tokens, child.cache_write_tokens, child.cache_saved_usd = 100, 30, 0.00002
    roll_up(parent, child)
    assert (parent.cached_input_tokens, parent.cache_write_tokens) == (150, 30)
    assert parent.cache_saved_usd == 0.00006


def test_the_child_keeps_the_parents_scope() -> None:
    parent = AgentInput(
        prompt="p",
        tenant="acme",
        tools=["calculator", "write_file", "delegate"],
        approve_tools=["write_file"],
        approval_timeout_s=30,
        pricing=PRICING,
    )
    args = DelegateArgs(prompt="sub task", tools=["calculator"])
    child = child_input(parent, args, Budget(max_tokens=5), ["calculator"], "parent-ws")
    assert (child.tenant, child.workspace, child.delegation_depth) == ("acme", "parent-ws", 1)
    assert child.approve_tools is None  # write_file is not among its tools
    assert child.approval_timeout_s == 30 and child.pricing == parent.pricing
    assert child.model == parent.model and child.budget.max_tokens == 5


def test_delegation_is_refused_past_the_depth_limit_and_for_tools_not_owned() -> None:
    call = ToolCall(id="c1", name="delegate", arguments={"prompt": "go"})
    assert check_delegate(call, 0, ["delegate"], "scripted") is None
    refused = check_delegate(call, MAX_DELEGATION_DEPTH, ["delegate"], "scripted")
    assert refused is not None and "depth" in refused
    foreign = ToolCall(id="c2", name="delegate", arguments={"prompt": "go", "tools": ["shell"]})
    refused = check_delegate(foreign, 0, ["delegate", "calculator"], "scripted")
    assert refused is not None and "'shell'" in refused
    bad = check_delegate(ToolCall(id="c3", name="delegate", arguments={}), 0, ["delegate"], "x")
    assert bad is not None and "prompt" in bad
    scripted = ToolCall(id="c4", name="delegate", arguments={"prompt": "go", "script": []})
    refused = check_delegate(scripted, 0, ["delegate"], "openai:gpt-4o-mini")
    assert refused is not None and "only the scripted model takes a script" in refused


def test_the_model_is_not_offered_the_script_argument() -> None:
    from onward.delegation import DELEGATE

    assert set(DELEGATE.parameters["properties"]) == {"prompt", "model", "tools", "max_tokens"}


def test_runs_begun_before_run_version_5_keep_their_delegate_spec() -> None:
    """A run names its tool specs by their hash after its first call: a run in flight when
    its worker is upgraded must be offered the very spec it began with."""
    from onward.delegation import DELEGATE, DELEGATE_BEFORE_V5, delegate_spec

    assert tool_specs_key([delegate_spec(4)]) == (  # the key runs begun on 4 stored
        "sha256-e768950933c4aab9007e07c9ff9511b5c453d62894b19bff2266e9bf58ecdc41"
    )
    assert delegate_spec(0) is delegate_spec(4) is DELEGATE_BEFORE_V5
    assert delegate_spec(5) is DELEGATE
    budget = DELEGATE.parameters["properties"]["max_tokens"]["description"]
    assert "all you have left" not in DELEGATE.description + budget
    assert "share" in DELEGATE.description and "equal share" in budget


@pytest.mark.parametrize("run_version", [4, RUN_VERSION])
async def test_a_run_offers_the_delegate_spec_of_the_version_it_began_with(
    worker: RunningWorker, monkeypatch: pytest.MonkeyPatch, run_version: int
) -> None:
    from onward.delegation import delegate_spec

    monkeypatch.setattr(tool_calls, "RUN_VERSION", run_version)  # what describe_worker says
    handle = await worker.start(
        {"prompt": "p", "tools": ["calculator", "delegate"], "script": [{"text": "ok"}]}
    )
    await handle.result()
    [request] = [ModelRequest.model_validate_json(raw) for raw in await model_inputs(handle)]
    offered = {spec.name: spec for spec in request.tools}
    assert offered["delegate"] == delegate_spec(run_version)


# -- real runs ---------------------------------------------------------------------------


async def test_the_child_stops_at_its_slice_and_usage_rolls_up(worker: RunningWorker) -> None:
    child_script = [
        {
            "text": "writing",
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "child.md", "content": "from child"}}
            ],
            "usage": USAGE,
        },
        calc("2+2"),
        calc("3+3"),
        {"text": "never reached", "usage": USAGE},
    ]
    handle = await worker.start(
        {
            "prompt": "delegate, then answer",
            "tools": ["calculator", "write_file", "delegate"],
            "tenant": "acme",
            "pricing": PRICING,
            "budget": {"max_tokens": 2000},
            "script": [
                delegating(prompt="do the sub task", max_tokens=300, script=child_script),
                {"text": "the sub-agent ran out; here is my answer", "usage": USAGE},
            ],
        }
    )
    result = await handle.result()
    assert result.status == "completed"
    child_id = child_of(result)
    child = await child_result(worker.client, child_id)

    # The slice is enforced: 3 calls of 120 tokens pass 300, and the child stops there.
    assert (child.status, child.limit) == ("budget_exceeded", "max_tokens")
    assert child.usage.model_calls == 3 and child.usage.tool_calls == 2
    status = await worker.client.get_workflow_handle(child_id).query(AgentWorkflow.status)
    assert status.budget.max_tokens == 300 and status.budget.on_exceeded == "stop"

    # The parent's model sees a tool error saying so, and goes on.
    delegate_call = result.steps[0].tool_calls[0]
    assert delegate_call.status == "error" and delegate_call.error is not None
    assert f"sub-agent {child_id} ended budget_exceeded: max_tokens" in delegate_call.error
    assert result.output == "the sub-agent ran out; here is my answer"
    first, second = await model_inputs(handle)
    assert b"ended budget_exceeded" not in first and b"ended budget_exceeded" in second

    # Parent usage == its own calls + the child's, exactly.
    own = RunUsage(input_tokens=200, output_tokens=40, total_tokens=240, model_calls=2)
    own.tool_calls, own.cost_usd, own.steps = 1, 0.00028, 2
    roll_up(own, child.usage)
    assert result.usage.model_dump(exclude={"duration_s"}) == own.model_dump(exclude={"duration_s"})
    assert result.usage.total_tokens == 240 + 360 and result.usage.model_calls == 5

    # The child wrote into the parent's workspace, and kept its tenant.
    assert (workspace_dir(worker.workspace, handle.id) / "child.md").read_text() == "from child"
    assert not workspace_dir(worker.workspace, child_id).exists()
    assert result.artifacts is not None and [a.path for a in result.artifacts] == ["child.md"]
    # Clients find the child's files where it wrote them (`onward artifacts <child>`).
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    found = await onward.artifacts(child_id, workspace_root=worker.workspace)
    assert [a.path for a in found] == ["child.md"]
    read = await onward.artifact(child_id, "child.md", workspace_root=worker.workspace)
    assert read == b"from child"
    child_history = await read_history(worker.client.get_workflow_handle(child_id))
    assert child_history.input is not None
    assert (child_history.input.tenant, child_history.input.delegation_depth) == ("acme", 1)
    # A sub-agent gives up a dead worker's task as soon as any run does.
    config = (await worker.client.get_workflow_handle(child_id).describe()).raw_description
    timeout = config.execution_config.default_workflow_task_timeout.ToTimedelta()
    assert timeout == WORKFLOW_TASK_TIMEOUT
    await assert_history_tells_the_same(handle, result)


async def test_a_childs_prompt_cache_figures_roll_up_with_its_tokens(
    worker: RunningWorker,
) -> None:
    """The parent's usage is its own calls plus its children's, cache figures included:
    its ``cache_saved_usd`` stays every input token at the full price minus the bill."""
    price = {**PRICING, "cached_input_per_mtok": 0.1, "cache_write_per_mtok": 1.25}
    cached = {"input_tokens": 1_000, "output_tokens": 10, "cached_input_tokens": 800}
    written = {**cached, "cached_input_tokens": 0, "cache_write_tokens": 600}
    child_script = [{**calc("1+1"), "usage": written}, {"text": "2", "usage": cached}]
    result = await worker.run(
        {
            "prompt": "delegate",
            "tools": ["calculator", "delegate"],
            "pricing": price,
            "script": [
                delegating(prompt="add", script=child_script),
                {"text": "2", "usage": cached},
            ],
        }
    )
    assert result.status == "completed", result.reason
    child = await child_result(worker.client, child_of(result))
    assert (child.usage.cached_input_tokens, child.usage.cache_write_tokens) == (800, 600)
    usage = result.usage
    assert (usage.cached_input_tokens, usage.cache_write_tokens) == (800 + 800, 600)
    own_saved = result.steps[1].cache_saved_usd
    assert own_saved is not None
    assert usage.cache_saved_usd == pytest.approx(own_saved + child.usage.cache_saved_usd)
    full = (usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6
    assert usage.cache_saved_usd == pytest.approx(full - usage.cost_usd)


async def test_a_child_failure_is_a_tool_error_and_the_parent_goes_on(
    worker: RunningWorker,
) -> None:
    handle = await worker.start(
        {
            "prompt": "delegate badly three ways",
            "tools": ["calculator", "delegate"],
            "script": [
                delegating(prompt="x", model="nosuch:model"),
                delegating(prompt="x", tools=["write_file"]),
                delegating(prompt="x", model="not a model"),
                {"text": "I did it myself"},
            ],
        }
    )
    result = await handle.result()
    assert result.status == "completed" and result.output == "I did it myself"
    assert b"failed: model: unknown model provider" in (await model_inputs(handle))[1]
    failed, foreign, invalid = (step.tool_calls[0] for step in result.steps[:3])
    assert failed.child_id is not None and failed.error is not None
    assert f"sub-agent {failed.child_id} failed: model: unknown model provider" in failed.error
    assert foreign.child_id is None and foreign.error is not None
    assert "'write_file' are not yours" in foreign.error
    assert invalid.child_id is None and invalid.error is not None and "model" in invalid.error
    await assert_history_tells_the_same(handle, result)


async def test_delegation_past_the_depth_limit_is_a_tool_error(worker: RunningWorker) -> None:
    result = await worker.run(
        {
            "prompt": "deep already",
            "tools": ["delegate"],
            "delegation_depth": MAX_DELEGATION_DEPTH,
            "script": [delegating(prompt="deeper"), {"text": "ok"}],
        }
    )
    call = result.steps[0].tool_calls[0]
    assert call.child_id is None and call.error is not None and "depth" in call.error


async def test_delegate_is_offered_only_when_named(worker: RunningWorker) -> None:
    result = await worker.run({"prompt": "p", "script": [delegating(prompt="x"), {"text": "ok"}]})
    error = result.steps[0].tool_calls[0].error
    assert error is not None and "unknown tool 'delegate'" in error


@pytest.mark.parametrize("how", ["signal", "native", "terminate"])
async def test_cancelling_the_parent_stops_the_child_before_its_next_call(
    worker: RunningWorker, how: str
) -> None:
    child_script = [calc("1+1"), calc("2+2", delay_s=60), calc("3+3"), {"text": "done"}]
    handle = await worker.start(
        {
            "prompt": "delegate a slow task",
            "tools": ["calculator", "delegate"],
            "script": [delegating(prompt="slow", script=child_script), {"text": "never"}],
        }
    )
    child_id: str | None = None

    async def child_in_its_slow_call() -> bool:
        nonlocal child_id
        description = await handle.describe()
        pending = description.raw_description.pending_children
        if not pending:
            return False
        child_id = pending[0].workflow_id
        child = worker.client.get_workflow_handle(child_id)
        try:
            calls = await model_inputs(child)
        except RPCError:
            return False  # initiated, not started yet
        return len(calls) == 2 and await activity_running(child, "call_model")

    await eventually(child_in_its_slow_call)
    assert child_id is not None
    if how == "signal":
        await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="stop everything"))
    elif how == "native":
        await handle.cancel()
    else:  # the parent's close policy asks the child to cancel
        await handle.terminate("parent terminated")
    child = worker.client.get_workflow_handle(child_id)

    async def child_closed() -> bool:
        return (await child.describe()).status != WorkflowExecutionStatus.RUNNING

    await eventually(child_closed)
    # No model call was started after the cancel: the slow one was the last.
    assert len(await model_inputs(child)) == 2
    # The sub-agent ends with its result, as a cancelled run does, for its parent to add up.
    done = await child_result(worker.client, child_id)
    assert done.status == "cancelled" and done.usage.model_calls == 1
    if how == "terminate":
        return

    # The parent waited for it: its usage is its own and its child's, exactly. The child's
    # close reaches the parent as an event of its own, so wait for the parent to close too.
    async def parent_closed() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    await eventually(parent_closed)
    status = await handle.query(AgentWorkflow.status)
    assert status.state == "cancelled"
    own = RunUsage(input_tokens=100, output_tokens=20, total_tokens=120, model_calls=1)
    own.tool_calls, own.steps = 1, 1
    roll_up(own, done.usage)
    fields = {"input_tokens", "output_tokens", "total_tokens", "model_calls", "tool_calls"}
    assert status.usage.model_dump(include=fields) == own.model_dump(include=fields)
    assert status.usage.total_tokens == 240
    # Read from its history too (a natively cancelled run has no result there).
    closed = await OnwardClient(worker.client, task_queue=worker.task_queue).status(handle.id)
    assert closed.usage.model_dump(include=fields) == own.model_dump(include=fields)
    (call,) = (await handle.query(AgentWorkflow.steps))[0].tool_calls
    assert call.status == "interrupted" and call.child_id == child_id


async def test_trace_prints_the_child_steps_under_the_delegate_call(
    worker: RunningWorker, address: str
) -> None:
    child_script = [calc("6*7"), {"text": "forty-two", "usage": USAGE}]
    handle = await worker.start(
        {
            "prompt": "delegate the sum",
            "tools": ["calculator", "delegate"],
            "script": [
                delegating(prompt="compute 6*7", script=child_script),
                {"text": "the child said 42", "usage": USAGE},
            ],
        }
    )
    result = await handle.result()
    child_id = child_of(result)
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    human = await run_onward("trace", handle.id, env=env)
    assert human.code == 0, human.stderr
    lines = human.stdout.splitlines()
    delegate_row = next(i for i, line in enumerate(lines) if "delegate(" in line)
    head = lines[delegate_row + 1]
    assert f"sub-agent {child_id}" in head and "completed" in head
    child_rows = lines[delegate_row + 2 : delegate_row + 5]
    assert "calculator(6*7)" in child_rows[1] and "-> 42" in child_rows[1]
    assert "answer: forty-two" in child_rows[2]
    call_column = lines[delegate_row].index("delegate(")
    assert child_rows[1].index("calculator(6*7)") > call_column  # indented under it
    assert "answer: the child said 42" in lines[delegate_row + 5]

    steps = await run_onward("steps", handle.id, env=env)
    assert steps.code == 0 and f"↳ sub-agent {child_id}" in steps.stdout, steps.stderr

    as_json = await run_onward("trace", handle.id, "--json", env=env)
    traced = as_json.json()["steps"][0]["tool_calls"][0]
    assert traced["child_id"] == child_id
    assert traced["child"]["workflow_id"] == child_id
    assert [step["text"] for step in traced["child"]["steps"]] == ["computing 6*7", "forty-two"]


async def test_a_workflow_author_delegates_from_their_own_workflow(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    writes: dict[str, Any] = {
        "text": "writing",
        "tool_calls": [{"name": "write_file", "arguments": {"path": "a.md", "content": "a"}}],
        "usage": USAGE,
    }
    scripts: list[list[dict[str, Any]]] = [
        [writes, {"text": "part one done", "usage": USAGE}],
        [calc("1+1"), calc("2+2"), calc("3+3"), {"text": "never", "usage": USAGE}],
    ]
    fan_out_id = f"fan-out-{uuid.uuid4().hex[:8]}"
    async with build_worker(
        client, settings, search_attribute_names=search_attribute_names, workflows=[FanOut]
    ):
        outcome = await client.execute_workflow(
            FanOut.run,
            [[ScriptTurn.model_validate(turn) for turn in script] for script in scripts],
            id=fan_out_id,
            task_queue=settings.task_queue,
        )
        status = await client.get_workflow_handle(f"{fan_out_id}-part-2").query(
            AgentWorkflow.status
        )
    one, two = outcome.results
    assert (one.status, one.output) == ("completed", "part one done")
    assert (two.status, two.limit) == ("budget_exceeded", "max_tokens")
    assert status.budget.max_tokens == 300  # narrowed from 1000
    assert outcome.usage.total_tokens == one.usage.total_tokens + two.usage.total_tokens == 600
    assert (workspace_dir(tmp_path, fan_out_id) / "a.md").read_text() == "a"


async def test_children_side_by_side_share_what_the_parent_has_left(
    worker: RunningWorker,
) -> None:
    child_script = [calc("1+1"), {"text": "done", "usage": USAGE}]
    result = await worker.run(
        {
            "prompt": "two at once",
            "tools": ["calculator", "delegate"],
            "budget": {"max_tokens": 1000},
            "script": [
                {
                    "text": "two sub-agents",
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {"prompt": "a", "max_tokens": 600, "script": child_script},
                        },
                        {"name": "delegate", "arguments": {"prompt": "b", "script": child_script}},
                    ],
                    "usage": USAGE,
                },
                {"text": "both done", "usage": USAGE},
            ],
        }
    )
    first, second = result.steps[0].tool_calls
    assert first.child_id is not None and second.child_id is not None
    budgets = [
        (await worker.client.get_workflow_handle(ident).query(AgentWorkflow.status)).budget
        for ident in (first.child_id, second.child_id)
    ]
    assert [budget.max_tokens for budget in budgets] == [600, 1000 - 120 - 600]
    assert result.usage.total_tokens == 120 * 2 + 240 * 2


async def test_children_of_one_turn_split_what_the_parent_has_left(
    worker: RunningWorker,
) -> None:
    # Neither names max_tokens: the first does not take it all, leaving the second none.
    child_script = [calc("1+1"), {"text": "done", "usage": USAGE}]
    delegate = {"name": "delegate", "arguments": {"prompt": "x", "script": child_script}}
    result = await worker.run(
        {
            "prompt": "two at once",
            "tools": ["calculator", "delegate"],
            "budget": {"max_tokens": 1000, "max_tool_calls": 11},
            "script": [
                {"text": "two sub-agents", "tool_calls": [delegate, delegate], "usage": USAGE},
                {"text": "both done", "usage": USAGE},
            ],
        }
    )
    assert result.status == "completed", result.reason
    budgets = [
        (await worker.client.get_workflow_handle(call.child_id).query(AgentWorkflow.status)).budget
        for call in result.steps[0].tool_calls
        if call.child_id is not None
    ]
    # 1000 - 120 tokens left, 11 - 2 tool calls (the two delegate calls themselves).
    assert [(b.max_tokens, b.max_tool_calls) for b in budgets] == [(440, 4), (440, 5)]
    assert [call.status for call in result.steps[0].tool_calls] == ["ok", "ok"]


async def test_a_sub_agents_approval_shows_on_its_parent_and_is_decided_there(
    worker: RunningWorker,
) -> None:
    write = {"name": "write_file", "arguments": {"path": "sub.md", "content": "s"}}
    child_script = [{"text": "writing", "tool_calls": [write]}, {"text": "written"}]
    handle = await worker.start(
        {
            "prompt": "delegate a write",
            "tools": ["write_file", "delegate"],
            "approve_tools": ["write_file"],  # the sub-agent keeps the approval settings
            "script": [delegating(prompt="write it", script=child_script), {"text": "done"}],
        }
    )
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    found: list[AgentStatus] = []

    async def waits() -> bool:
        found[:] = [await onward.status(handle.id)]
        return found[0].state == "awaiting_approval"

    await eventually(waits)
    (pending,) = found[0].pending_approvals
    assert pending.name == "write_file" and pending.run_id is not None
    assert pending.run_id.startswith(f"{handle.id}.delegate-")
    decided = await onward.approve(handle.id)  # through the parent
    assert decided.call_ids == [pending.call_id]
    assert decided.run_id == pending.run_id  # the sub-agent's, not the parent's id
    result = await handle.result()
    assert (result.status, result.output) == ("completed", "done")
    assert (workspace_dir(worker.workspace, handle.id) / "sub.md").read_text() == "s"


async def test_a_parents_own_and_its_sub_agents_approvals_show_together(
    worker: RunningWorker,
) -> None:
    def write(path: str) -> dict[str, Any]:
        return {"name": "write_file", "arguments": {"path": path, "content": path}}

    child_script = [{"text": "writing", "tool_calls": [write("sub.md")]}, {"text": "written"}]
    turn = delegating(prompt="write it", script=child_script)
    turn["tool_calls"].insert(0, write("own.md"))  # the parent's own, in the same turn
    handle = await worker.start(
        {
            "prompt": "write and delegate a write",
            "tools": ["write_file", "delegate"],
            "approve_tools": ["write_file"],
            "script": [turn, {"text": "done"}],
        }
    )
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    found: list[AgentStatus] = []

    async def both_wait() -> bool:
        found[:] = [await onward.status(handle.id)]
        return len(found[0].pending_approvals) == 2

    await eventually(both_wait)
    assert found[0].state == "awaiting_approval"
    own, theirs = sorted(found[0].pending_approvals, key=lambda call: call.run_id or "")
    assert own.run_id is None and own.arguments["path"] == "own.md"
    assert theirs.run_id is not None and theirs.arguments["path"] == "sub.md"
    # "Every pending call" of the parent would decide one of the two runs only: refused.
    with pytest.raises(RequestRejected, match="calls of several runs wait"):
        await onward.approve(handle.id)
    assert (await onward.approve(theirs.run_id)).call_ids == [theirs.call_id]
    # Named through the parent, its own call is the parent's, whatever id a sub-agent's has.
    assert (await onward.approve(handle.id, own.call_id)).call_ids == [own.call_id]
    result = await handle.result()
    assert (result.status, result.output) == ("completed", "done")
    written = workspace_dir(worker.workspace, handle.id)
    assert sorted(path.name for path in written.glob("*.md")) == ["own.md", "sub.md"]


async def test_the_report_counts_a_sub_agents_usage_once(
    worker: RunningWorker, address: str
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    child_script = [calc("1+1"), {"text": "2", "usage": USAGE}]
    result = await worker.run(
        {
            "prompt": "delegate",
            "tenant": tenant,
            "tools": ["calculator", "delegate"],
            "script": [
                delegating(prompt="add", script=child_script),
                {"text": "2", "usage": USAGE},
            ],
        }
    )
    assert result.usage.total_tokens == 480  # its own 240 and its child's 240

    async def both_listed() -> bool:
        return (await worker.client.count_workflows(report_query(since, tenant))).count == 2

    await eventually(both_listed)
    env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
    done = await run_onward("report", "--json", "--tenant", tenant, "--since", "10m", env=env)
    assert done.code == 0, done.stderr
    report = done.json()
    assert report["runs"] == 2 and report["total_tokens"] == 480
    assert report["cost_usd"] == pytest.approx(result.usage.cost_usd)
    (model,) = report["models"]
    assert model["calls"] == 4 and model["input_tokens"] + model["output_tokens"] == 480


async def test_only_a_sub_agent_names_a_workspace(worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "p", "workspace": "someone-elses-run"})
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert cause.message.startswith("workspace: only a sub-agent names a workspace")


async def listed_artifacts(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the run listed its artifacts (an activity or local activity: its history says)."""
    pairing = CallPairing(REQUEST_TYPES, RESULT_TYPES)
    async for event in handle.fetch_history_events():
        pairing.add(event)
    return any(call.activity_type == "list_artifacts" for call in pairing.calls)


async def test_a_sub_agent_lists_artifacts_only_with_tools_that_may_write(
    worker: RunningWorker,
) -> None:
    # The first child has only the calculator: neither it nor its parent lists the
    # workspace. The second may write (write_file): both list what it wrote.
    handles = [
        await worker.start(
            {
                "prompt": "delegate, then answer",
                "tools": ["calculator", "write_file", "delegate"],
                "script": [
                    delegating(prompt="sub task", tools=tools, script=script),
                    {"text": "done", "usage": USAGE},
                ],
            }
        )
        for tools, script in [
            (["calculator"], [calc("2+2"), {"text": "4"}]),
            (["write_file"], writes_one("sub.md")),
        ]
    ]
    (quiet, writing) = [await handle.result() for handle in handles]
    quiet_child = worker.client.get_workflow_handle(child_of(quiet))
    assert (await child_result(worker.client, child_of(quiet))).status == "completed"
    assert quiet.artifacts is None
    assert not await listed_artifacts(handles[0]) and not await listed_artifacts(quiet_child)
    writing_child = await child_result(worker.client, child_of(writing))
    for result in (writing, writing_child):
        assert result.artifacts is not None and [a.path for a in result.artifacts] == ["sub.md"]
    assert await listed_artifacts(handles[1])


def writes_one(path: str) -> list[dict[str, Any]]:
    call = {"name": "write_file", "arguments": {"path": path, "content": "x"}}
    return [{"text": "writing", "tool_calls": [call], "usage": USAGE}, {"text": "written"}]


async def test_pausing_the_parent_pauses_its_sub_agent_until_resumed(worker: RunningWorker) -> None:
    child_script = [calc("1+1"), calc("2+2", delay_s=2), calc("3+3"), {"text": "child done"}]
    handle = await worker.start(
        {
            "prompt": "delegate, then answer",
            "tools": ["calculator", "delegate"],
            "script": [delegating(prompt="slow", script=child_script), {"text": "parent done"}],
        }
    )
    child_id: str | None = None

    async def child_in_its_slow_call() -> bool:
        nonlocal child_id
        pending = (await handle.describe()).raw_description.pending_children
        if not pending:
            return False
        child_id = pending[0].workflow_id
        try:
            calls = await model_inputs(worker.client.get_workflow_handle(child_id))
        except RPCError:
            return False  # initiated, not started yet
        return len(calls) == 2

    await eventually(child_in_its_slow_call)
    assert child_id is not None
    child = worker.client.get_workflow_handle(child_id)
    await handle.signal(AgentWorkflow.pause)

    async def child_paused() -> bool:
        status = await child.query(AgentWorkflow.status)
        return status.state == "paused"

    await eventually(child_paused)
    # Its slow call finished; no call was started while paused.
    assert len(await model_inputs(child)) == 2
    await handle.signal(AgentWorkflow.resume)
    result: AgentResult = await handle.result()
    assert result.status == "completed" and result.output == "parent done"
    done = await child_result(worker.client, child_id)
    assert done.status == "completed" and done.usage.model_calls == 4


async def test_a_parents_status_names_the_sub_agent_it_waits_for(worker: RunningWorker) -> None:
    # A parent waiting on a sub-agent read "running" with its last finished step:
    # nothing said what it was doing, or which sub-agent to look at.
    child_script = [calc("1+1", delay_s=60), {"text": "child done"}]
    handle = await worker.start(
        {
            "prompt": "delegate, then answer",
            "tools": ["calculator", "delegate"],
            "script": [delegating(prompt="slow", script=child_script), {"text": "parent done"}],
        }
    )
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)

    status: AgentStatus | None = None

    async def delegating_now() -> bool:
        nonlocal status
        status = await onward.status(handle.id)
        current = status.current_step
        return (
            current is not None
            and bool(current.tool_calls)
            and bool(current.tool_calls[0].child_id)
        )

    await eventually(delegating_now)
    assert status is not None and status.current_step is not None
    (call,) = status.current_step.tool_calls
    assert (call.name, call.status, call.started_at is not None) == ("delegate", None, True)
    pending = (await handle.describe()).raw_description.pending_children
    assert [child.workflow_id for child in pending] == [call.child_id]
    now = [line for line in status_lines(handle.id, status) if line.startswith("now:")]
    assert len(now) == 1 and now[0].startswith("now:    step 1 · delegate(")
    assert now[0].endswith(f" · sub-agent {call.child_id}")
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="enough"))
    await handle.result()
    ended = await onward.status(handle.id)
    assert ended.current_step is None and "current_step" not in ended.model_dump()


def test_a_call_waiting_for_approval_is_awaited_not_running() -> None:
    started = datetime.now(UTC)
    call = ToolCallRecord(id="call_1_1", name="calculator", arguments={}, started_at=started)
    status = AgentStatus(
        state="awaiting_approval",
        step=0,
        usage=RunUsage(),
        budget=Budget(),
        pending_approvals=[
            PendingApproval(call_id="call_1_1", name="calculator", step=1, requested_at=started)
        ],
        current_step=StepRecord(step=1, started_at=started, tool_calls=[call]),
    )
    lines = status_lines("run", status)
    assert any(line.startswith("await:  call_1_1") for line in lines)
    assert not any(line.startswith("now:") for line in lines)


async def test_a_sub_agents_web_ui_summary_shows_the_models_words_as_written(
    worker: RunningWorker,
) -> None:
    # The Web UI renders a run's summary as markdown, and a sub-agent's is the model's
    # delegate call: unescaped, it showed bold text and a live link.
    lure = "**urgent** [click me](https://evil.example/phish)"
    result = await worker.run(
        {
            "prompt": "hand it over",
            "tools": ["delegate"],
            "script": [delegating(prompt=lure), {"text": "done"}],
        }
    )
    child = worker.client.get_workflow_handle(child_of(result))
    summary = await (await child.describe()).static_summary()
    assert summary == escape_markdown(f"delegate({lure})")
    assert summary is not None and "[click me](" not in summary and "**urgent**" not in summary
    # Read back (onward trace, the history), it is the call as the model made it.
    parent = worker.client.get_workflow_handle(child_of(result).split(".delegate-")[0])
    rebuilt = reconstruct([event async for event in parent.fetch_history_events()])
    (delegated,) = rebuilt.steps[0].tool_calls.values()
    assert delegated.summary == f"delegate({lure})"


async def test_a_sub_agents_budget_cannot_be_extended_past_its_parents(
    worker: RunningWorker,
) -> None:
    # Raised alone, the sub-agent spent past the parent's max_tokens and the parent
    # ended budget_exceeded ("used 1275 of 500").
    child_script = [calc("1+1", delay_s=60), {"text": "child done"}]
    handle = await worker.start(
        {
            "prompt": "delegate",
            "tools": ["calculator", "delegate"],
            "budget": {"max_tokens": 500},
            "script": [delegating(prompt="slow", script=child_script), {"text": "root done"}],
        }
    )

    async def child_running() -> bool:
        pending = (await handle.describe()).raw_description.pending_children
        return bool(pending) and await activity_running(
            worker.client.get_workflow_handle(pending[0].workflow_id), "call_model"
        )

    await eventually(child_running)
    child_id = (await handle.describe()).raw_description.pending_children[0].workflow_id
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    before = (await onward.status(child_id)).budget
    with pytest.raises(RequestRejected, match=f"a sub-agent of {handle.id}.*extend the parent"):
        await onward.extend_budget(child_id, {"max_tokens": 100000})
    assert (await onward.status(child_id)).budget == before
    # The parent itself may be extended.
    assert (await onward.extend_budget(handle.id, {"max_tokens": 1000})).max_tokens == 1000
    await handle.cancel()


async def test_a_sub_agents_call_decided_through_its_parent_with_no_worker_is_not_lost(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # Read from the history (no worker answering), the parent showed no waiting call,
    # so the approval went to the parent, which refused it once a worker came back:
    # the sub-agent waited on for good, and the person had been told it may apply.
    write = {"name": "write_file", "arguments": {"path": "sub.md", "content": "s"}}
    child_script = [{"text": "writing", "tool_calls": [write]}, {"text": "written"}]
    agent = {
        "prompt": "delegate a write",
        "tools": ["write_file", "delegate"],
        "approve_tools": ["write_file"],
        "script": [delegating(prompt="write it", script=child_script), {"text": "done"}],
    }
    settings = WorkerSettings(task_queue=f"tq-{uuid.uuid4().hex[:12]}", workspace=tmp_path)
    onward = OnwardClient(client, task_queue=settings.task_queue)
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(agent),
            id=f"test-{uuid.uuid4().hex[:12]}",
            task_queue=settings.task_queue,
        )

        async def waits() -> bool:
            return (await onward.status(handle.id)).state == "awaiting_approval"

        await eventually(waits)
    with pytest.raises(NoWorker, match="which has sub-agents running"):
        await onward.approve(handle.id)  # the server still lists the stopped worker
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        await eventually(waits)
        decided = await onward.approve(handle.id)
        assert decided.call_ids == ["call_1_1"]
        result = await asyncio.wait_for(handle.result(), 30)
    assert (result.status, result.output) == ("completed", "done")
