"""A whole agent run on a real dev server with the scripted model."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from temporalio.client import Client

from conftest import RunningWorker, model_inputs, running_worker
from onward.activities.tools import ToolContext, builtin_registry, tool


class ChattyArgs(BaseModel):
    words: int


SCRIPT = [
    {
        "text": "I need the total first.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 3 + 4"}}],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    },
    {
        "text": "Now I will save it and check the workspace.",
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": "total.txt", "content": "55\n"}},
            {"name": "calculator", "arguments": {"expression": "55 / 5"}},
        ],
        "usage": {"input_tokens": 150, "output_tokens": 30},
    },
    {
        "tool_calls": [{"name": "read_file", "arguments": {"path": "total.txt"}}],
        "usage": {"input_tokens": 200, "output_tokens": 10},
    },
    {"text": "The total is 55.", "usage": {"input_tokens": 250, "output_tokens": 5}},
]


async def test_run_with_several_tool_calls_completes(worker: RunningWorker) -> None:
    result = await worker.run({"prompt": "Add things up", "script": SCRIPT})

    assert result.status == "completed"
    assert result.output == "The total is 55."
    assert result.reason is None
    assert [step.step for step in result.steps] == [1, 2, 3, 4]
    first, second, third, last = result.steps
    assert first.text == "I need the total first."
    assert [(c.name, c.result, c.error) for c in first.tool_calls] == [("calculator", "55", None)]
    assert [(c.name, c.error) for c in second.tool_calls] == [
        ("write_file", None),
        ("calculator", None),
    ]
    assert second.tool_calls[1].result == "11.0"
    assert third.tool_calls[0].result == "55\n"
    assert last.tool_calls == []
    (written,) = worker.workspace.rglob("total.txt")  # in the run's own workspace
    assert written.read_text() == "55\n"
    ids = [call.id for step in result.steps for call in step.tool_calls]
    assert len(ids) == len(set(ids)) == 4
    for step in result.steps:
        assert step.duration_ms is not None and step.duration_ms >= 0
        for call in step.tool_calls:
            assert call.started_at is not None and call.duration_ms is not None

    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (700, 65, 765)
    assert (usage.tool_calls, usage.model_calls, usage.steps) == (4, 4, 4)
    # scripted is priced at $1 / $2 per million input / output tokens
    assert abs(usage.cost_usd - (700 * 1 + 65 * 2) / 1e6) < 1e-12
    assert usage.cost_known


async def test_script_running_out_ends_with_a_final_text(worker: RunningWorker) -> None:
    result = await worker.run(
        {
            "prompt": "compute",
            "tools": ["calculator"],
            "script": [
                {"tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}]}
            ],
        }
    )
    assert result.status == "completed"
    assert result.output is not None and "4" in result.output
    assert len(result.steps) == 2
    assert result.usage.total_tokens > 0  # estimated when the script gives no usage


async def test_each_tool_call_is_timed_on_its_own(worker: RunningWorker) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "wait", "arguments": {"seconds": 1.5}},
                {"name": "calculator", "arguments": {"expression": "1+1"}},
            ]
        },
        {"text": "done"},
    ]
    result = await worker.run({"prompt": "p", "script": script, "tools": ["wait", "calculator"]})
    wait, calculator = result.steps[0].tool_calls
    assert wait.duration_ms is not None and wait.duration_ms >= 1500
    # Concurrent with the wait, yet timed by its own end, not the slowest call's.
    assert calculator.duration_ms is not None and calculator.duration_ms < 1000


async def test_large_results_are_cut_for_the_model_not_for_the_step_log(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    @tool(max_result_chars=500)
    def chatty(args: ChattyArgs, ctx: ToolContext) -> str:
        """Says a lot."""
        return "".join(f"{i:04d}" for i in range(args.words))  # 4 characters a word

    registry = builtin_registry()
    registry.register(chatty)
    script = [{"tool_calls": [{"name": "chatty", "arguments": {"words": 500}}]}, {"text": "ok"}]
    async with running_worker(client, tmp_path, search_attribute_names, registry=registry) as w:
        handle = await w.start({"prompt": "p", "script": script, "tools": ["chatty"]})
        result = await handle.result()
    logged = result.steps[0].tool_calls[0].result
    assert logged is not None and len(logged) == 2000  # all of it: under the log's cap
    # The messages the second call adds (the step record it carries to the store is the log's).
    second_call = json.loads((await model_inputs(handle))[1])
    second_model_input = json.dumps(second_call["transcript"]["new_messages"]).encode()
    assert b"[truncated: showing 500 of 2000 characters]" in second_model_input
    assert logged[:500].encode() in second_model_input
    assert logged[500:600].encode() not in second_model_input
