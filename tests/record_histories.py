"""Record event histories for the replay test: `python tests/record_histories.py NAME...`.

Run it after a deliberate, compatible workflow change only to *add* a
history; never re-record an existing one to make the replay test pass: that
test exists to prove old histories still replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.converter import PayloadCodec
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slow_end_store import SlowEndStore

from onward import search_attributes as sa
from onward.activities.providers import providers_from_env
from onward.connection import DATA_CONVERTER
from onward.contracts import (
    AgentInput,
    ApprovalDecision,
    BudgetExtension,
    CancelRequest,
    SessionInput,
    SessionMessage,
    SessionReply,
    SteerRequest,
)
from onward.sessions import message_update_id
from onward.sessions import run_id as message_run_id
from onward.store import open_store
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.worker import WorkerSettings, build_worker, ensure_search_attributes
from onward.workflows import AgentWorkflow, SessionWorkflow

HERE = Path(__file__).resolve().parent / "histories"
RECORDER: list[Client] = []
"""The recording client, for scenarios that look at a run's sub-agents."""
Handle = WorkflowHandle[AgentWorkflow, Any]


def calc(expression: str, delay_s: float = 0.0) -> dict[str, Any]:
    return {
        "text": f"computing {expression}",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "usage": {"input_tokens": 100, "output_tokens": 20},
        "delay_s": delay_s,
    }


async def until(handle: Handle, state: str) -> None:
    while (await handle.query(AgentWorkflow.status)).state != state:
        await asyncio.sleep(0.05)


async def tools_and_control(handle: Handle) -> None:
    await until(handle, "budget_paused")
    await handle.signal(AgentWorkflow.steer, SteerRequest(message="keep it short"))
    await handle.signal(AgentWorkflow.pause)
    await handle.execute_update(AgentWorkflow.extend_budget, BudgetExtension(max_tool_calls=20))
    await until(handle, "paused")
    await handle.signal(AgentWorkflow.resume)


async def cancel_mid_call(handle: Handle) -> None:
    while (await handle.query(AgentWorkflow.status)).step < 1:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="recorded cancel"))


async def nothing(handle: Handle) -> None:
    return None


async def extend_after_mid_turn_deadline(handle: Handle) -> None:
    await until(handle, "budget_paused")
    await handle.execute_update(
        AgentWorkflow.extend_budget, BudgetExtension(max_duration_s=600, max_tool_calls=10)
    )


async def native_cancel_while_waiting(handle: Handle) -> None:
    while not any(
        [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("timer_started_event_attributes")
        ]
    ):
        await asyncio.sleep(0.05)
    await handle.cancel()


async def steer_while_waiting(handle: Handle) -> None:
    while not any(
        [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("timer_started_event_attributes")
        ]
    ):
        await asyncio.sleep(0.05)
    await handle.signal(AgentWorkflow.steer, SteerRequest(message="add 1 and 1 next"))


async def approve_one_reject_one(handle: Handle) -> None:
    while len((await handle.query(AgentWorkflow.status)).pending_approvals) < 2:
        await asyncio.sleep(0.05)
    first, second = (await handle.query(AgentWorkflow.status)).pending_approvals
    await handle.execute_update(AgentWorkflow.approve, ApprovalDecision(call_id=first.call_id))
    await handle.execute_update(
        AgentWorkflow.reject, ApprovalDecision(call_id=second.call_id, note="not that one")
    )


async def steer_after_the_first_step(handle: Handle) -> None:
    while (await handle.query(AgentWorkflow.status)).step < 1:
        await asyncio.sleep(0.05)
    await handle.signal(AgentWorkflow.steer, SteerRequest(message="and then add 3"))


async def approve_while_paused(handle: Handle) -> None:
    while not (await handle.query(AgentWorkflow.status)).pending_approvals:
        await asyncio.sleep(0.05)
    await handle.signal(AgentWorkflow.pause)
    await handle.execute_update(AgentWorkflow.approve, ApprovalDecision())
    await until(handle, "paused")
    await handle.signal(AgentWorkflow.resume)


async def cancel_while_the_child_waits(handle: Handle) -> None:
    await until_the_child_waits(handle)
    await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="recorded parent cancel"))


async def native_cancel_while_the_child_waits(handle: Handle) -> None:
    await until_the_child_waits(handle)
    await handle.cancel()


async def pause_and_resume_while_the_child_waits(handle: Handle) -> None:
    await until_the_child_waits(handle)
    await handle.signal(AgentWorkflow.pause)
    child = RECORDER[0].get_workflow_handle(
        (await handle.describe()).raw_description.pending_children[0].workflow_id
    )
    while (await child.query(AgentWorkflow.status)).state != "paused":
        await asyncio.sleep(0.05)
    await handle.signal(AgentWorkflow.resume)


async def until_the_child_waits(handle: Handle) -> None:
    while not (await handle.describe()).raw_description.pending_children:
        await asyncio.sleep(0.05)
    child = RECORDER[0].get_workflow_handle(
        (await handle.describe()).raw_description.pending_children[0].workflow_id
    )
    while True:
        try:
            if (await child.query(AgentWorkflow.status)).step >= 1:
                break
        except RPCError:
            pass  # initiated, not started yet
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[Handle], Awaitable[None]]]] = {
    "tools_and_control": (
        {
            "prompt": "use tools, get paused, steered, extended",
            "system": "You are careful.",
            "script": [
                {
                    "text": "two at once",
                    "tool_calls": [
                        {
                            "name": "write_file",
                            "arguments": {"path": "a.txt", "content": "a\n", "append": True},
                        },
                        {"name": "calculator", "arguments": {"expression": "2**10"}},
                    ],
                },
                {
                    "tool_calls": [
                        {"name": "read_file", "arguments": {"path": "a.txt"}},
                        {"name": "calculator", "arguments": {"expr": "bad"}},
                        {"name": "nope", "arguments": {}},
                    ]
                },
                {"text": "The end."},
            ],
            "budget": {"max_tool_calls": 2, "on_exceeded": "pause", "max_duration_s": 600},
        },
        tools_and_control,
    ),
    "finish_on_budget": (
        {
            "prompt": "run out of steps",
            "script": [calc("1+1"), calc("2+2"), {"text": "final"}],
            "budget": {"max_steps": 1, "on_exceeded": "finish"},
        },
        nothing,
    ),
    "deadline_stop": (
        {
            "prompt": "too slow",
            "script": [calc("1+1"), calc("2+2", delay_s=30)],
            "budget": {"max_duration_s": 1.5},
        },
        nothing,
    ),
    "cancel_signal": (
        {"prompt": "cancel me", "script": [calc("1+1"), calc("2+2", delay_s=30)]},
        cancel_mid_call,
    ),
    "mid_turn_deadline": (
        {
            "prompt": "a long wait beside a gated call",
            "tools": ["wait", "calculator"],
            "script": [
                {
                    "tool_calls": [
                        {"name": "wait", "arguments": {"seconds": 60}},
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                    ]
                },
                {"text": "done"},
            ],
            "budget": {"max_tool_calls": 1, "max_duration_s": 2, "on_exceeded": "pause"},
        },
        extend_after_mid_turn_deadline,
    ),
    "model_attempts_from_worker": (
        # patched: the model retry policy carries the worker's ONWARD_MODEL_MAX_ATTEMPTS
        {"prompt": "one tool, then answer", "script": [calc("6*7"), {"text": "42"}]},
        nothing,
    ),
    "native_cancel": (
        {
            "prompt": "cancel me natively",
            "tools": ["wait", "calculator"],
            "script": [
                calc("1+1"),
                {"tool_calls": [{"name": "wait", "arguments": {"seconds": 60}}]},
            ],
        },
        native_cancel_while_waiting,
    ),
    # Local tool calls typed by their summary, so the Web UI's timeline reads them.
    "local_tool_type": (
        {"prompt": "a local tool call", "script": [calc("6*7"), {"text": "42"}]},
        nothing,
    ),
    "typed_step_log": (
        {
            "prompt": "wait, call a tool that does not exist, get steered, run out of tool calls",
            "tools": ["wait", "calculator"],
            "script": [
                {
                    "text": "waiting first",
                    "tool_calls": [
                        {"name": "wait", "arguments": {"seconds": 1}},
                        {"name": "nope", "arguments": {}},
                    ],
                },
                {
                    "text": "as steered",
                    "tool_calls": [
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                        {"name": "calculator", "arguments": {"expression": "2+2"}},
                    ],
                },
                {"text": "never reached"},
            ],
            "budget": {"max_tool_calls": 3},
        },
        steer_while_waiting,
    ),
    # patched: human approval, a workspace per run, artifacts listed in the result
    "human_approval": (
        {
            "prompt": "write two files; one is approved, one rejected",
            "tools": ["write_file", "calculator"],
            "approve_tools": ["write_file"],
            "approval_timeout_s": 600,
            "script": [
                {
                    "text": "two files",
                    "tool_calls": [
                        {"name": "write_file", "arguments": {"path": "a.md", "content": "a"}},
                        {"name": "write_file", "arguments": {"path": "b.md", "content": "b"}},
                    ],
                },
                calc("6*7"),
                {"text": "done"},
            ],
        },
        approve_one_reject_one,
    ),
    # patched "webhook": the result goes to webhook_url by an activity; the
    # recording worker has no ONWARD_WEBHOOK_SECRET, so the delivery fails and the run
    # still completes.
    "webhook": (
        {
            "prompt": "answer, then tell a webhook",
            "script": [calc("6*7"), {"text": "42"}],
            "webhook_url": "http://127.0.0.1:9/hook",
        },
        nothing,
    ),
    # patched "webhook-on-native-cancel": a natively cancelled run still tells its webhook.
    "webhook_native_cancel": (
        {
            "prompt": "cancel me natively, then tell a webhook",
            "tools": ["wait"],
            "script": [{"tool_calls": [{"name": "wait", "arguments": {"seconds": 60}}]}],
            "webhook_url": "http://127.0.0.1:9/hook",
        },
        native_cancel_while_waiting,
    ),
    # patched "webhook-on-invalid-input": a run failed for a tool the worker lacks tells it too.
    "webhook_invalid_input": (
        {
            "prompt": "use a tool this worker lacks",
            "tools": ["no_such_tool"],
            "webhook_url": "http://127.0.0.1:9/hook",
        },
        nothing,
    ),
    # patched "approval-shows-pause": a call approved while paused shows the run paused.
    "approval_while_paused": (
        {
            "prompt": "write a file, approved while paused",
            "tools": ["write_file"],
            "approve_tools": ["write_file"],
            "script": [
                {
                    "text": "one file",
                    "tool_calls": [
                        {"name": "write_file", "arguments": {"path": "a.md", "content": "a"}}
                    ],
                },
                {"text": "done"},
            ],
        },
        approve_while_paused,
    ),
    # patched: the conversation in the transcript store, and two continue-as-new switches
    # (each run of the chain is recorded: continue_as_new.json, continue_as_new_run2.json...).
    "continue_as_new": (
        {
            "prompt": "many steps over several runs",
            "script": [
                calc("1+1", delay_s=0.5),
                calc("2+2"),
                calc("3+3"),
                calc("4+4"),
                {"text": "done"},
            ],
            "continue_as_new_after": 2,
        },
        steer_after_the_first_step,
    ),
    # patched "token-stream": model calls publish their text to the workflow stream in
    # batches (publish signals in history), and the stream's log is cut after each call.
    "token_stream": (
        {
            "prompt": "stream the text of two calls",
            "stream": True,
            "script": [
                {**calc("6*7"), "text": "let me compute six times seven", "delay_s": 0.6},
                {"text": "the answer is forty two, as computed", "delay_s": 0.6},
            ],
        },
        nothing,
    ),
    # patched: no `context` in the input, but the worker's pricing table gives the model a
    # window (WINDOW_PRICING): the run compacts at 80% of it.
    "context_window": (
        {
            "prompt": "many small steps in a tiny window",
            "model": "scripted:tiny-window",
            "script": [calc(f"{n}+{n}") for n in range(1, 9)] + [{"text": "done"}],
        },
        nothing,
    ),
    # patched (tool-cache): the run's cache_tools TTL and its tenant travel on each tool
    # call; the second identical calculation is answered from the tool cache.
    "tool_cache": (
        {
            "prompt": "the same sum twice",
            "tenant": "acme",
            "cache_tools": {"calculator": 60},
            "script": [calc("2+2"), calc("2+2"), {"text": "4, twice"}],
        },
        nothing,
    ),
    # patched "memory-scope": tool calls carry the run's tenant and memory scope; a fact
    # remembered, then recalled in the same run (and a local tool call, which carries them too).
    "memory_scope": (
        {
            "prompt": "remember, then recall",
            "tenant": "history-tenant",
            "memory_scope": "history-scope",
            "script": [
                {
                    "text": "saving",
                    "tool_calls": [
                        {
                            "name": "remember",
                            "arguments": {"key": "user.city", "text": "The user lives in Lisbon."},
                        },
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                    ],
                },
                {
                    "text": "looking",
                    "tool_calls": [{"name": "recall", "arguments": {"query": "city"}}],
                },
                {"text": "done"},
            ],
        },
        nothing,
    ),
    # patched "artifacts-by-tool": only calls of tools that take a ToolContext mark the
    # run to list its artifacts. The calculator and a sub-agent given only the calculator
    # do not: neither this run nor its child (artifacts_by_tool_child.json) lists them.
    "artifacts_by_tool": (
        {
            "prompt": "compute, and have a sub-agent compute",
            "tools": ["calculator", "write_file", "delegate"],
            "script": [
                {
                    "text": "two at once",
                    "tool_calls": [
                        {"name": "calculator", "arguments": {"expression": "6*7"}},
                        {
                            "name": "delegate",
                            "arguments": {
                                "prompt": "compute",
                                "tools": ["calculator"],
                                "script": [calc("2+2"), {"text": "4"}],
                            },
                        },
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                },
                {"text": "42 and 4"},
            ],
        },
        nothing,
    ),
    # patched "artifacts-by-tool": a file tool among others still lists the files.
    "artifacts_by_tool_write": (
        {
            "prompt": "compute and write",
            "script": [
                {
                    "tool_calls": [
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                        {"name": "write_file", "arguments": {"path": "r.md", "content": "2"}},
                    ]
                },
                {"text": "written"},
            ],
        },
        nothing,
    ),
    # patched "end-of-run-local": the end's transcript write and artifact listing are
    # local activities, every patch the end asks decided at the start. The recording
    # store makes this run's write outlast its workflow task (tests/slow_end_store.py),
    # so the local activities span workflow tasks.
    # The worker says it fills step records in from the messages: model calls send
    # them without the text, arguments and results the messages hold; a switch carries
    # the last 10 steps (steps_from_messages_run2.json: the run after it).
    "steps_from_messages": (
        {
            "prompt": "steps by reference, over two runs",
            "script": [calc("1+1"), calc("2+2"), calc("3+3"), {"text": "done"}],
            "continue_as_new_after": 2,
        },
        nothing,
    ),
    # patched "publish-throttled": quick steps upsert their counters with the start
    # and the end only; the patch stands for every older one.
    "publish_throttled": (
        {
            "prompt": "quick steps",
            "tenant": "acme",
            "script": [calc("1+1"), calc("2+2"), calc("3+3"), {"text": "done"}],
        },
        nothing,
    ),
    "end_of_run_local": (
        {
            "prompt": "write a file, end slowly",
            "script": [
                {
                    "tool_calls": [
                        {"name": "write_file", "arguments": {"path": "end.md", "content": "e"}},
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                    ]
                },
                {"text": "written"},
            ],
        },
        nothing,
    ),
    # RUN_VERSION 1: no patch asked (describe_worker's answer says the run has them
    # all); started as OnwardClient starts runs, with the first search attribute
    # values, so only the end upserts.
    "run_version": (
        {
            "prompt": "quick steps, a file",
            "tenant": "acme",
            "script": [
                calc("1+1"),
                {
                    "tool_calls": [
                        {"name": "write_file", "arguments": {"path": "v.md", "content": "v"}}
                    ]
                },
                {"text": "done"},
            ],
        },
        nothing,
    ),
    # ... started as `temporal workflow start` starts it: the run upserts them itself.
    "run_version_plain_start": (
        {"prompt": "quick steps", "script": [calc("1+1"), {"text": "done"}]},
        nothing,
    ),
    # ... continued as new: the next run begins with the last run's values.
    "run_version_chain": (
        {
            "prompt": "many steps over two runs",
            "script": [calc("1+1"), calc("2+2"), calc("3+3"), {"text": "done"}],
            "continue_as_new_after": 2,
        },
        nothing,
    ),
    # RUN_VERSION 2: two sub-agents of one turn share what the parent has left
    # (run_version_2_split_child.json, _child2.json: 440 tokens each).
    "run_version_2_split": (
        {
            "prompt": "two sub-agents at once",
            "tools": ["calculator", "delegate"],
            "budget": {"max_tokens": 1000},
            "script": [
                {
                    "text": "two at once",
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {"prompt": "a", "script": [calc("1+1"), {"text": "a"}]},
                        },
                        {
                            "name": "delegate",
                            "arguments": {"prompt": "b", "script": [calc("2+2"), {"text": "b"}]},
                        },
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                },
                {"text": "both done"},
            ],
        },
        nothing,
    ),
    # RUN_VERSION 3: model and tool calls carry the run's deadline (not_after), each
    # started through a task that calls again if a worker refused it for a deadline
    # extend_budget moved; a worker and a local tool call side by side, then a wait
    # cut off by the deadline, extended while paused.
    "run_version_3_deadline": (
        {
            "prompt": "calls with a deadline",
            "tools": ["calculator", "write_file", "wait"],
            "script": [
                {
                    "text": "two at once",
                    "tool_calls": [
                        {"name": "write_file", "arguments": {"path": "a.txt", "content": "a"}},
                        {"name": "calculator", "arguments": {"expression": "1+1"}},
                    ],
                },
                {"tool_calls": [{"name": "wait", "arguments": {"seconds": 60}}]},
                {"text": "done"},
            ],
            "budget": {"max_duration_s": 3, "max_tool_calls": 10, "on_exceeded": "pause"},
        },
        extend_after_mid_turn_deadline,
    ),
    # RUN_VERSION 3 (recorded with 299682f's code; recorded now it would be a run
    # version 4 history): a running run's counters upserted at most every 5 s: the
    # second step, 6 s after the start, upserts them.
    "publish_interval_v3": (
        {
            "prompt": "a slow step",
            "script": [calc("1+1"), calc("2+2", delay_s=6), {"text": "done"}],
        },
        nothing,
    ),
    # RUN_VERSION 4: ... at most every 30 s: the second step (6 s) upserts nothing,
    # the third (31 s) the counters.
    "run_version_4_publish": (
        {
            "prompt": "slow steps",
            "script": [
                calc("1+1"),
                calc("2+2", delay_s=6),
                calc("3+3", delay_s=25),
                {"text": "done"},
            ],
        },
        nothing,
    ),
    # RUN_VERSION 5: delegate's description says the sub-agents of a turn share what is
    # left (before: "all you have left"); run_version_5_delegate_child.json: the child.
    "run_version_5_delegate": (
        {
            "prompt": "one sub-agent",
            "tools": ["calculator", "delegate"],
            "budget": {"max_tokens": 1000},
            "script": [
                {
                    "text": "handing it over",
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {"prompt": "a", "script": [calc("1+1"), {"text": "a"}]},
                        }
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                },
                {"text": "done"},
            ],
        },
        nothing,
    ),
    # RUN_VERSION 6: recorded on a worker that encodes payloads (SEALED), a local tool
    # call's activity type names its tool only: calculator(…).
    "run_version_6_sealed": (
        {"prompt": "add", "tools": ["calculator"], "script": [calc("6*7"), {"text": "42"}]},
        nothing,
    ),
    # fallback_models: the first model's provider fails its call (no OPENAI_API_KEY on
    # the recording worker), the run goes on with the scripted model for good.
    "fallback_model": (
        {
            "prompt": "add",
            "model": "openai:gpt-4o-mini",
            "fallback_models": ["scripted"],
            "tools": ["calculator"],
            "script": [calc("6*7"), {"text": "42"}],
        },
        nothing,
    ),
    # patched "delegate": a sub-agent as a child workflow on a slice of the budget; it
    # writes into the parent's workspace and stops at its slice (budget_exceeded),
    # which the parent's model reads as a tool error (delegate_child.json: the child).
    "delegate": (
        {
            "prompt": "delegate a task, then answer",
            "tools": ["calculator", "write_file", "delegate"],
            "tenant": "acme",
            "budget": {"max_tokens": 5000},
            "script": [
                {
                    "text": "handing it over",
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {
                                "prompt": "write a note and compute",
                                "max_tokens": 300,
                                "script": [
                                    {
                                        "tool_calls": [
                                            {
                                                "name": "write_file",
                                                "arguments": {"path": "n.md", "content": "n"},
                                            }
                                        ],
                                        "usage": {"input_tokens": 100, "output_tokens": 20},
                                    },
                                    calc("2+2"),
                                    calc("3+3"),
                                    {"text": "never reached"},
                                ],
                            },
                        }
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                },
                calc("6*7"),
                {"text": "done"},
            ],
        },
        nothing,
    ),
    # patched "delegate": the parent is cancelled (signal) while its child waits; the
    # child is cancelled with it (delegate_cancel_child.json: the child, natively cancelled).
    "delegate_cancel": (
        {
            "prompt": "delegate a long wait, get cancelled",
            "tools": ["calculator", "wait", "delegate"],
            "script": [
                {
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {
                                "prompt": "compute, then wait long",
                                "script": [
                                    calc("1+1"),
                                    {
                                        "tool_calls": [
                                            {"name": "wait", "arguments": {"seconds": 600}}
                                        ]
                                    },
                                    {"text": "never reached"},
                                ],
                            },
                        }
                    ]
                },
                {"text": "never reached"},
            ],
        },
        cancel_while_the_child_waits,
    ),
    # patched "delegate": the parent is paused while its child waits, and resumed; both
    # signals are passed on to the child (delegate_pause_child.json), which pauses after
    # its wait and then finishes.
    "delegate_pause": (
        {
            "prompt": "delegate, get paused and resumed",
            "tools": ["calculator", "wait", "delegate"],
            "script": [
                {
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {
                                "prompt": "compute, wait a little, compute",
                                "script": [
                                    calc("1+1"),
                                    {"tool_calls": [{"name": "wait", "arguments": {"seconds": 1}}]},
                                    calc("2+2"),
                                    {"text": "child done"},
                                ],
                            },
                        }
                    ]
                },
                {"text": "parent done"},
            ],
        },
        pause_and_resume_while_the_child_waits,
    ),
    # patched "delegate": the same, cancelled natively (`temporal workflow cancel`).
    "delegate_native_cancel": (
        {
            "prompt": "delegate a long wait, get cancelled natively",
            "tools": ["calculator", "wait", "delegate"],
            "script": [
                {
                    "tool_calls": [
                        {
                            "name": "delegate",
                            "arguments": {
                                "prompt": "compute, then wait long",
                                "script": [
                                    calc("1+1"),
                                    {
                                        "tool_calls": [
                                            {"name": "wait", "arguments": {"seconds": 600}}
                                        ]
                                    },
                                    {"text": "never reached"},
                                ],
                            },
                        }
                    ]
                },
                {"text": "never reached"},
            ],
        },
        native_cancel_while_the_child_waits,
    ),
}

SessionHandle = WorkflowHandle[SessionWorkflow, Any]


async def three_messages_two_at_once(session: SessionHandle) -> int:
    """One message with a tool call, then two sent together; then close. Returns 3."""

    async def send(text: str) -> None:
        await session.execute_update("send_message", SessionMessage(message=text))

    await send("what is 6*7?")
    await asyncio.gather(send("and twice that?"), send("thanks"))
    await session.signal(SessionWorkflow.close)
    return 3


async def keyed_messages_repeated_after_continue_as_new(session: SessionHandle) -> int:
    """Two keyed messages (the session continues as new after each), the first sent
    again (answered from its carried turn), its key with another message (refused);
    then close. Returns 2."""

    async def send(text: str, key: str) -> None:
        message = SessionMessage(message=text, idempotency_key=key)
        await session.execute_update(
            "send_message", message, id=message_update_id(key, text), result_type=SessionReply
        )

    await send("first", "k1")
    await send("second", "k2")
    await send("first", "k1")
    with contextlib.suppress(WorkflowUpdateFailedError):
        await send("not the first", "k1")
    await session.signal(SessionWorkflow.close)
    return 2


async def message_and_close_at_once(session: SessionHandle) -> int:
    """One message answered; then a second and the close sent together. Returns 2."""
    await session.execute_update("send_message", SessionMessage(message="first"))
    sending = asyncio.create_task(
        session.execute_update("send_message", SessionMessage(message="second"))
    )
    await session.signal(SessionWorkflow.close)
    with contextlib.suppress(WorkflowUpdateFailedError):  # refused if the close came first
        await sending
    return 2


SESSION_SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[SessionHandle], Awaitable[int]]]] = {
    # sessions: a child AgentWorkflow per message given the conversation by reference,
    # two messages at once, continue-as-new between messages, the close signal.
    "session": (
        {
            "system": "You are a session.",
            "tools": ["calculator"],
            "script": [calc("6*7"), {"text": "42"}, {"text": "84"}, {"text": "you are welcome"}],
            "continue_as_new_after": 2,
            "message_budget": {"max_steps": 5},
        },
        three_messages_two_at_once,
    ),
    # patched: close takes effect after the messages of its activation (here: a
    # message and the close sent at once, both read by one workflow task).
    "session_close_after_messages": (
        {"script": [{"text": "one"}, {"text": "two"}]},
        message_and_close_at_once,
    ),
    # keyed messages: a repeat after continue-as-new answered from the carried turn,
    # the key with another message refused by the update's validator.
    "session_keyed": (
        {"script": [{"text": "one"}, {"text": "two"}], "continue_as_new_after": 1},
        keyed_messages_repeated_after_continue_as_new,
    ),
}

WINDOW_PRICING = {
    "scripted:tiny-window": {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "context_window": 100}
}
"""The pricing file of the recording worker: only the context_window scenario's model."""


CLIENT_STARTS = {"run_version", "run_version_chain", "publish_interval_v3", "run_version_4_publish"}
"""Started as OnwardClient starts a run: with the first search attribute values (the
others as `temporal workflow start` starts one, with none)."""


async def record(client: Client, names: list[str], only: list[str]) -> None:
    RECORDER[:] = [client]
    with tempfile.TemporaryDirectory() as workspace:
        task_queue = f"record-{uuid.uuid4().hex[:8]}"
        pricing = Path(workspace) / "pricing.json"
        pricing.write_text(json.dumps(WINDOW_PRICING), encoding="utf-8")
        settings = WorkerSettings(
            task_queue=task_queue,
            workspace=Path(workspace),
            store_url=str(Path(workspace) / "store"),
            pricing_files=(pricing,),
        )
        # Only the end_of_run_local run's end is slow (its transcript id starts so).
        store = SlowEndStore(
            await open_store(settings.store_url), prefix="history-end_of_run_local"
        )
        # Every provider, configured without keys (fallback_model's first call fails so).
        providers = providers_from_env({})
        async with build_worker(
            client, settings, search_attribute_names=names, store=store, providers=providers
        ):
            for name, (agent_input, drive) in SCENARIOS.items():
                if name not in only:
                    continue
                agent = AgentInput.model_validate(agent_input)
                handle = await client.start_workflow(
                    AgentWorkflow.run,
                    agent,
                    id=f"history-{name}",
                    task_queue=task_queue,
                    task_timeout=WORKFLOW_TASK_TIMEOUT,  # as OnwardClient.start
                    search_attributes=(
                        sa.at_start(agent.model, agent.tenant, names)
                        if name in CLIENT_STARTS
                        else None
                    ),
                )
                await drive(handle)
                status = (await handle.query(AgentWorkflow.status)).state
                with contextlib.suppress(WorkflowFailureError):
                    await handle.result()
                # The chain's first run (a bare handle would read its latest run).
                first_run = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
                history = await first_run.fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"{name}: {status} ({len(history.events)} events)")
                await record_children(client, name, history)
                run = 1
                while history.events[-1].HasField(
                    "workflow_execution_continued_as_new_event_attributes"
                ):
                    run += 1
                    attributes = history.events[
                        -1
                    ].workflow_execution_continued_as_new_event_attributes
                    next_run = client.get_workflow_handle(
                        handle.id, run_id=attributes.new_execution_run_id
                    )
                    history = await next_run.fetch_history()
                    (HERE / f"{name}_run{run}.json").write_text(history.to_json())
                    print(f"{name} run {run}: {len(history.events)} events")
                await save_chain(client, name, handle.id, handle.result_run_id, status)
            for name, (session_input, drive_session) in SESSION_SCENARIOS.items():
                if name not in only:
                    continue
                session = await client.start_workflow(
                    SessionWorkflow.run,
                    SessionInput.model_validate(session_input),
                    id=f"history-{name}",
                    task_queue=task_queue,
                )
                messages = await drive_session(session)
                result = await session.result()
                await save_chain(client, name, session.id, session.result_run_id, "closed")
                for number in range(1, messages + 1):
                    child = message_run_id(session.id, number)
                    await save_chain(client, f"{name}_m{number}", child, None, "message run")
                print(f"{name}: {result.turns} turns")


async def save_chain(
    client: Client, name: str, workflow_id: str, first_run_id: str | None, status: str
) -> None:
    """Write the histories of a continue-as-new chain: NAME.json, NAME_run2.json..."""
    # The chain's first run (a bare handle would read its latest run).
    first_run = client.get_workflow_handle(workflow_id, run_id=first_run_id)
    history = await first_run.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"{name}: {status} ({len(history.events)} events)")
    run = 1
    while history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes"):
        run += 1
        attributes = history.events[-1].workflow_execution_continued_as_new_event_attributes
        next_run = client.get_workflow_handle(workflow_id, run_id=attributes.new_execution_run_id)
        history = await next_run.fetch_history()
        (HERE / f"{name}_run{run}.json").write_text(history.to_json())
        print(f"{name} run {run}: {len(history.events)} events")


async def record_children(client: Client, name: str, history: WorkflowHistory) -> None:
    """Record each sub-agent the run started, once it has closed, as NAME_child.json."""
    started = [
        event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        for event in history.events
        if event.HasField("child_workflow_execution_started_event_attributes")
    ]
    for number, child_id in enumerate(started, start=1):
        child = client.get_workflow_handle(child_id)
        while (await child.describe()).status == WorkflowExecutionStatus.RUNNING:
            await asyncio.sleep(0.05)
        suffix = "_child" if number == 1 else f"_child{number}"
        child_history = await child.fetch_history()
        (HERE / f"{name}{suffix}.json").write_text(child_history.to_json())
        print(f"{name}{suffix}: {len(child_history.events)} events")


SEALED = {"run_version_6_sealed"}
"""Scenarios recorded on a worker whose client has a codec (one changing nothing, so
the history replays without keys): the worker reports itself sealed."""


class Unchanged(PayloadCodec):
    """A codec that leaves payloads as they are."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def main(only: list[str]) -> None:
    if SEALED & set(only) and not set(only) <= SEALED:
        sys.exit(f"record {', '.join(sorted(SEALED))} on their own (a sealed worker)")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=DATA_CONVERTER,
    ) as env:
        names = await ensure_search_attributes(env.client, "default")
        client = env.client
        if set(only) <= SEALED:
            config = client.config()
            config["data_converter"] = dataclasses.replace(
                DATA_CONVERTER, payload_codec=Unchanged()
            )
            client = Client(**config)
        await record(client, names, only)


if __name__ == "__main__":
    wanted = sys.argv[1:]
    if not wanted:
        sys.exit(
            f"usage: {sys.argv[0]} NAME... (new histories only; known: "
            f"{', '.join([*SCENARIOS, *SESSION_SCENARIOS])})"
        )
    asyncio.run(main(wanted))
