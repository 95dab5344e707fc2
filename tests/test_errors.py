"""Tool errors go back to the model and the run goes on; bad input fails at once, clearly."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from conftest import RunningWorker, model_inputs
from onward.contracts import AGENT_WORKFLOW
from onward.starter.follow import final_result
from onward.starter.history import reconstruct


async def test_tool_errors_are_fed_back_and_the_run_completes(worker: RunningWorker) -> None:
    script = [
        {
            "text": "trying three things",
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "../escape.txt", "content": "x"}},
                {"name": "calculator", "arguments": {"expr": "1+1"}},
                {"name": "teleport", "arguments": {"to": "mars"}},
                {"name": "calculator", "arguments": {"expression": "1/0"}},
            ],
        },
        {
            "text": "recovered",
            "tool_calls": [{"name": "calculator", "arguments": {"expression": "2*21"}}],
        },
        {"text": "The answer is 42."},
    ]
    handle = await worker.start({"prompt": "p", "script": script})
    result = await handle.result()

    assert result.status == "completed"
    assert result.output == "The answer is 42."
    escape, bad_args, unknown, zero = result.steps[0].tool_calls
    assert escape.error is not None and "outside the workspace" in escape.error
    assert bad_args.error is not None and "expression" in bad_args.error
    assert unknown.error is not None and "unknown tool 'teleport'" in unknown.error
    assert zero.error == "calculator: division by zero"
    assert all(call.result is None for call in result.steps[0].tool_calls)
    assert result.steps[1].tool_calls[0].result == "42"
    assert not (worker.workspace.parent / "escape.txt").exists()

    # The model saw each error as that tool's result.
    second_model_input = (await model_inputs(handle))[1]
    assert second_model_input.count(b'"is_error":true') == 4
    assert b"division by zero" in second_model_input


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model": "scripted"}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "p", "model": "acme:gpt-9"}, "unknown model provider 'acme'"),
    ({"prompt": "p", "budget": {"max_tokens": -5}}, "budget.max_tokens"),
    ({"prompt": "p", "script": {"text": "not a list"}}, "script"),
    ({"prompt": "p", "budget": {"max_tokns": 5}}, "budget.max_tokns"),
    ({"prompt": "p", "budget": {"max_tokens": -3}, "foo": 1}, "foo"),  # the second of two
    ({"prompt": "p", "tools": ["calculator", "teleport"]}, "tools: unknown tool(s) 'teleport'"),
    ({"prompt": "p", "tenant": "t" * 3000}, "tenant"),
    ({"prompt": "p", "model": "scripted:" + "m" * 3000}, "model"),
    (
        {"prompt": "p", "fallback_models": ["acme:gpt-9"]},
        "fallback_models.0: unknown model provider 'acme'",
    ),
    ({"prompt": "p", "fallback_models": ["gpt-4o"]}, "fallback_models.0: 'gpt-4o' names no"),
    (
        {"prompt": "p", "model": "openai:a", "fallback_models": ["openai:b", "openai:a"]},
        "fallback_models.1: 'openai:a' is the model itself; list only the models to try after it",
    ),
]


@pytest.mark.parametrize(("agent_input", "named"), INVALID)
async def test_invalid_input_fails_at_once_naming_the_field(
    worker: RunningWorker, agent_input: dict[str, Any], named: str
) -> None:
    # Started by type name with plain JSON, as the `temporal` CLI does: no client-side checks.
    handle = await worker.client.start_workflow(
        AGENT_WORKFLOW,
        agent_input,
        id=f"bad-{uuid.uuid4().hex[:8]}",
        task_queue=worker.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), timeout=15)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert named in cause.message
    assert cause.non_retryable or cause.type == "ValidationError"
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.FAILED
    failed_tasks = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_task_failed_event_attributes")
    ]
    assert failed_tasks == []  # failed the run, not a workflow task retried forever
    # What `onward result` and `watch` show names it too, not "2 validation errors".
    outcome = await final_result(handle)
    assert outcome.result.reason is not None and named in outcome.result.reason
    # And read from the history alone (`onward status` of an ended run), the same words.
    history = reconstruct([event async for event in handle.fetch_history_events()])
    assert history.failure == outcome.result.reason
