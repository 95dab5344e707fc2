"""Determinism guard: histories recorded from real runs must replay on today's workflow code.

A failure here means a workflow change would break runs in flight: guard it
with `workflow.patched()` instead of re-recording the history.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from onward.connection import DATA_CONVERTER
from onward.workflows import AgentWorkflow, SessionWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert {path.stem for path in HISTORIES} >= {
        "tools_and_control",
        "finish_on_budget",
        "deadline_stop",
        "cancel_signal",
        "mid_turn_deadline",  # patched: settle started calls before a gate waits
        "native_cancel",
        "typed_step_log",  # steering, a refused call, a wait, a budget stop: typed fields
        "model_attempts_from_worker",  # patched: the worker decides model attempts
        "human_approval",  # patched: approval, a workspace per run, artifacts in the result
        "continue_as_new",  # patched: the transcript store; two switches (run2, run3)
        "webhook_native_cancel",  # patched: a native cancel delivers the webhook
        "webhook_invalid_input",  # patched: a run failed for its tools delivers the webhook
        "approval_while_paused",  # patched: a call approved while paused shows the pause
        "token_stream",  # patched: streamed model text in publish signals, the log cut per call
        "session",  # SessionWorkflow: messages as child runs, continue-as-new (run2), close
        "session_m1",  # a message's run given the conversation (the first: a new one)
        "session_m2",  # ... and one continuing it from the store (copy_conversation)
        "session_keyed",  # keyed messages: a repeat after continue-as-new answered from
        "session_keyed_run3",  # the carried turn (no child run), no key reused
        "session_close_after_messages",  # patched: a message and the close in one task,
        # the message answered before the session closes
        "tool_cache",  # patched: tool calls carry the run's cache TTL and tenant
        "delegate",  # patched: a sub-agent on a budget slice stops at it; a tool error
        "delegate_child",  # the sub-agent: the parent's workspace, depth 1, budget_exceeded
        "delegate_cancel",  # patched: the parent cancelled (signal) while its sub-agent waits
        "delegate_cancel_child",  # the sub-agent, cancelled with its parent
        "delegate_pause",  # pause and resume passed on to the running sub-agent
        "delegate_pause_child",  # the sub-agent, paused after its wait, then finishing
        "delegate_native_cancel",  # patched: the same, natively cancelled
        "delegate_native_cancel_child",
        "memory_scope",  # patched: tool calls carry the run's tenant and memory scope
        "artifacts_by_tool",  # patched: only tools taking a ToolContext list artifacts
        "artifacts_by_tool_child",  # its sub-agent, given only the calculator: no listing
        "artifacts_by_tool_write",  # ... and a file tool among others still lists them
        "publish_throttled",  # patched: counters upserted at most every 5 s while running
        "steps_from_messages",  # step records sent without what the messages hold; a
        "steps_from_messages_run2",  # switch carrying the last 10 steps
        "end_of_run_local",  # patched: the end's write and listing as local activities,
        # the write slower than the workflow task (they span a task); its one patch
        # marker stands for every older patch
        "run_version",  # RUN_VERSION 1: no patch asked; started with the first attribute
        "run_version_plain_start",  # values (only the end upserts), or with none
        "run_version_chain",  # ... continued as new: the next run begins with the
        "run_version_chain_run2",  # last run's values
        "run_version_2_split",  # RUN_VERSION 2: sub-agents of one turn share what is left
        "run_version_2_split_child",
        "run_version_2_split_child2",
        "run_version_3_deadline",  # RUN_VERSION 3: calls carry the run's deadline
        "publish_interval_v3",  # ... and counters upserted at most every 5 s (here at 6 s)
        "run_version_4_publish",  # RUN_VERSION 4: at most every 30 s (not at 6 s, at 31 s)
        "run_version_5_delegate",  # RUN_VERSION 5: delegate says sub-agents share what is
        "run_version_5_delegate_child",  # left
        "run_version_6_sealed",  # RUN_VERSION 6: an encrypting worker's local tool call
        # is typed calculator(…), without its arguments
        "fallback_model",  # a provider failing a call: the run goes on with the fallback
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays(path: Path) -> None:
    # A chain's later runs (NAME_run2 ...) have the workflow id of its first (NAME).
    workflow_id = "history-" + re.sub(r"_run\d+$", "", path.stem)
    history = WorkflowHistory.from_json(workflow_id, path.read_text())
    replayer = Replayer(workflows=[AgentWorkflow, SessionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None


async def test_a_worker_refuses_to_go_on_with_a_run_begun_on_a_newer_run_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Older rules would take the run elsewhere (a delegate spec named by another hash,
    say): its workflow task fails, to be retried, until a newer worker takes it."""
    path = Path(__file__).parent / "histories" / "run_version_5_delegate.json"
    # A chain's later runs (NAME_run2 ...) have the workflow id of its first (NAME).
    workflow_id = "history-" + re.sub(r"_run\d+$", "", path.stem)
    history = WorkflowHistory.from_json(workflow_id, path.read_text())
    replayer = Replayer(  # outside the sandbox, which would import the module afresh
        workflows=[AgentWorkflow, SessionWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    monkeypatch.setattr(sys.modules[AgentWorkflow.__module__], "RUN_VERSION", 4)  # older
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "began on run version 5, this worker knows up to 4" in str(result.replay_failure)
