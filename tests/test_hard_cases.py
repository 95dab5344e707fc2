"""The awkward moments: reused ids, unpriced models, mid-turn pauses, finishing, odd ids."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError

from conftest import RunningWorker, activity_running, eventually, running_worker
from onward.activities.providers.scripted import ScriptedModel
from onward.activities.tools import ToolContext, builtin_registry, tool
from onward.artifacts import workspace_dir
from onward.client import OnwardClient
from onward.contracts import (
    ApprovalDecision,
    BudgetExtension,
    ModelRequest,
    ModelResponse,
    ToolCall,
    Usage,
)
from onward.workflows import AgentWorkflow


def append(line: str) -> dict[str, Any]:
    return {
        "tool_calls": [
            {
                "name": "write_file",
                "arguments": {"path": "log.txt", "content": line + "\n", "append": True},
            }
        ]
    }


async def test_a_reused_workflow_id_still_writes(worker: RunningWorker) -> None:
    workflow_id = f"reused-{uuid.uuid4().hex[:8]}"
    for line in ("first", "second"):
        handle = await worker.start(
            {"prompt": "p", "script": [append(line), {"text": "ok"}]}, workflow_id=workflow_id
        )
        assert (await handle.result()).status == "completed"
    # One workflow id, one workspace: a session's runs see each other's files.
    assert (workspace_dir(worker.workspace, workflow_id) / "log.txt").read_text() == (
        "first\nsecond\n"
    )


class UnpricedModel:
    """Calls calculator, then answers; its model has no price in any table."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        usage = Usage(input_tokens=10, output_tokens=5)
        if self.calls % 2 == 0:
            return ModelResponse(text="two", usage=usage, model=request.model)
        call = ToolCall(id="c", name="calculator", arguments={"expression": "1+1"})
        return ModelResponse(tool_calls=[call], usage=usage, model=request.model)


@pytest_asyncio.fixture
async def unpriced_worker(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> AsyncIterator[tuple[RunningWorker, UnpricedModel]]:
    """A worker whose ``acme`` provider is an :class:`UnpricedModel`, and that model."""
    unpriced = UnpricedModel()
    providers = {"scripted": ScriptedModel(), "acme": unpriced}
    async with running_worker(
        client, tmp_path, search_attribute_names, providers=providers
    ) as worker:
        yield worker, unpriced


async def test_a_cost_budget_never_calls_a_model_with_no_price(
    unpriced_worker: tuple[RunningWorker, UnpricedModel],
) -> None:
    worker, unpriced = unpriced_worker
    capped = {"prompt": "p", "model": "acme:mystery-1", "budget": {"max_cost_usd": 1.0}}
    result = await worker.run(capped)
    # Its cost could not be counted, so it is not spent: no call, no step.
    assert result.status == "budget_exceeded" and result.limit == "max_cost_usd"
    assert result.reason is not None
    assert result.reason.startswith("max_cost_usd: cost unknown (acme:mystery-1 has no price")
    assert unpriced.calls == 0 and result.steps == [] and result.usage.model_calls == 0
    # Priced by the run itself, or with no cost budget, the same model is called.
    price = {"input_per_mtok": 1.0, "output_per_mtok": 1.0}
    priced = await worker.run({**capped, "pricing": price})
    assert priced.status == "completed" and priced.usage.cost_known
    uncapped = await worker.run({"prompt": "p", "model": "acme:mystery-1"})
    assert uncapped.status == "completed" and not uncapped.usage.cost_known
    assert unpriced.calls == 4


async def test_nor_does_its_compaction_summarise_with_it(
    unpriced_worker: tuple[RunningWorker, UnpricedModel],
) -> None:
    # A session's second message runs compaction first (the first message is history
    # by then): its summary call is a call to the same model.
    worker, unpriced = unpriced_worker
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    session_id = await onward.open_session(
        {
            "model": "acme:mystery-1",
            "tools": [],
            "budget": {"max_cost_usd": 1.0},
            "context": {"max_tokens": 10, "keep_last_turns": 0},
        }
    )
    texts = ("first question " * 20, "second question " * 20)
    replies = [await onward.send_message(session_id, text) for text in texts]
    await onward.close_session(session_id)
    assert unpriced.calls == 0
    for reply in replies:
        assert reply.status == "budget_exceeded", reply
        assert reply.reason is not None and "cost unknown (acme:mystery-1" in reply.reason
        assert reply.steps == []


class ApprovalArgs(BaseModel):
    target: str


@tool(requires_approval=True)
def launch(args: ApprovalArgs, ctx: ToolContext) -> str:
    """Launches something irreversible."""
    raise AssertionError("must never run without approval")


async def test_a_tool_that_requires_approval_never_runs_unasked(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    registry = builtin_registry()
    registry.register(launch)
    script = [
        {"tool_calls": [{"name": "launch", "arguments": {"target": "moon"}}]},
        {"text": "ok"},
    ]
    async with running_worker(client, tmp_path, search_attribute_names, registry=registry) as w:
        handle = await w.start({"prompt": "p", "script": script, "tools": ["launch"]})

        async def awaiting() -> bool:
            return (await handle.query(AgentWorkflow.status)).state == "awaiting_approval"

        await eventually(awaiting)
        await handle.execute_update(AgentWorkflow.reject, ApprovalDecision(note="not today"))
        result = await handle.result()
    assert result.status == "completed"
    call = result.steps[0].tool_calls[0]
    assert (call.status, call.error) == ("refused", "rejected: not today")


async def test_extend_budget_cannot_add_a_limit_where_there_was_none(
    worker: RunningWorker,
) -> None:
    script = [{"text": "slow", "delay_s": 30}]
    handle = await worker.start({"prompt": "p", "script": script})
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_tokens=1))
    assert "max_tokens is unlimited" in str(caught.value.cause)
    await handle.terminate("test done")


def calc(expression: str, **extra: Any) -> dict[str, Any]:
    return {
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "usage": {"input_tokens": 100, "output_tokens": 50},
        **extra,
    }


async def test_budget_paused_reason_follows_the_limit_still_exceeded(
    worker: RunningWorker,
) -> None:
    handle = await worker.start(
        {
            "prompt": "p",
            "script": [calc("1+1"), calc("2+2"), {"text": "done"}],
            "budget": {"max_tokens": 100, "max_tool_calls": 1, "on_exceeded": "pause"},
        }
    )

    async def paused_on(limit: str) -> bool:
        status = await handle.query(AgentWorkflow.status)
        return status.state == "budget_paused" and (status.reason or "").startswith(limit)

    await eventually(lambda: paused_on("max_tokens"))
    await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_tokens=10_000))
    await eventually(lambda: paused_on("max_tool_calls"))  # not the stale max_tokens reason
    await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_tool_calls=10))
    assert (await handle.result()).status == "completed"


async def test_pause_mode_mid_turn_still_races_the_deadline(worker: RunningWorker) -> None:
    # The wait runs; the calculator's gate is over max_tool_calls (pause mode). The
    # running wait must still be cut at max_duration_s instead of running 60 s.
    turn = {
        "tool_calls": [
            {"name": "wait", "arguments": {"seconds": 60}},
            {"name": "calculator", "arguments": {"expression": "1+1"}},
        ]
    }
    handle = await worker.start(
        {
            "prompt": "p",
            "script": [turn, {"text": "done"}],
            "tools": ["wait", "calculator"],
            "budget": {"max_tool_calls": 1, "max_duration_s": 2, "on_exceeded": "pause"},
        }
    )

    async def paused_on_time() -> bool:
        status = await handle.query(AgentWorkflow.status)
        return status.state == "budget_paused" and (status.reason or "").startswith(
            "max_duration_s"
        )

    await eventually(paused_on_time, timeout_s=15)
    await handle.signal(AgentWorkflow.cancel)
    result = await handle.result()
    assert result.status == "cancelled"
    wait, calculator = result.steps[0].tool_calls
    assert wait.error is not None and wait.error.startswith("interrupted: max_duration_s")
    assert calculator.error is not None and calculator.error.startswith("not run")


async def test_finishing_refuses_extend_and_honours_pause(worker: RunningWorker) -> None:
    script = [calc("1+1"), {"text": "final answer", "delay_s": 3}]
    handle = await worker.start(
        {"prompt": "p", "script": script, "budget": {"max_steps": 1, "on_exceeded": "finish"}}
    )
    await eventually(lambda: step_count_is(handle, 1))
    await eventually(lambda: activity_running(handle, "call_model"))
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_steps=9))
    assert "already giving its final answer" in str(caught.value.cause)
    result = await handle.result()
    assert (result.status, result.output) == ("budget_exceeded", "final answer")


async def step_count_is(handle: Any, count: int) -> bool:
    return bool((await handle.query(AgentWorkflow.status)).step == count)


class RepeatingIds:
    """A provider that (wrongly) gives two tool calls the same id."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls > 1:
            return ModelResponse(text="done", model=request.model)
        return ModelResponse(
            tool_calls=[
                ToolCall(id="dup", name="calculator", arguments={"expression": "6*7"}),
                ToolCall(id="dup", name="calculator", arguments={"expression": "1+1"}),
            ],
            model=request.model,
        )


async def test_repeated_tool_call_ids_do_not_mix_results(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    providers = {"scripted": ScriptedModel(), "dupe": RepeatingIds()}
    async with running_worker(
        client, tmp_path, search_attribute_names, providers=providers
    ) as worker:
        result = await worker.run({"prompt": "p", "model": "dupe:x"})
    first, second = result.steps[0].tool_calls
    assert (first.result, second.result) == ("42", "2")
    assert first.id != second.id


class HugeArgs(BaseModel):
    n: int


@tool(max_result_chars=64_000)
def huge(args: HugeArgs, ctx: ToolContext) -> str:
    """Returns 64,000 characters."""
    return str(args.n) * 64_000


async def test_a_conversation_larger_than_one_payload_runs_on_through_the_store(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # It used to end the run (the whole conversation went in every model call's
    # input); with the transcript store each call carries only what is new.
    registry = builtin_registry()
    registry.register(huge)
    turn = {"tool_calls": [{"name": "huge", "arguments": {"n": i}} for i in range(1, 6)]}
    script = [turn] * 8 + [{"text": "done"}]
    async with running_worker(client, tmp_path, search_attribute_names, registry=registry) as w:
        result = await w.run({"prompt": "p", "script": script, "tools": ["huge"]})
    assert result.status == "completed", result.reason
    assert len(result.steps) == 9
