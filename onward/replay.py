"""Replay runs on this installation's workflows, export a run whole, fork a run.

Temporal goes on with a run by replaying its event history on the workflow
code: a worker of a new version rebuilds each run in flight from what the old
one recorded. If the new code makes another decision from the same history
(a workflow change not guarded by ``workflow.patched``), that run's next
workflow task fails, and fails again on every retry, until a worker that
agrees takes it. ``onward replay`` asks that question before a deploy, of real
runs: it replays their histories here, on the workflows this installation
would run, and says which would not go on. Onward's own tests replay
histories recorded from every kind of run; this replays yours.

``onward export`` writes a run as one JSON document: its input, result, whole
step log, conversation (from the transcript store) and the event history of
each run of its chain, which Temporal keeps only for the namespace's retention
period. ``onward replay --file`` replays an export, or a history written by
``temporal workflow show --output json``.

``onward fork`` starts a new run from a run's conversation as it stood at the
end of one of its steps (its reply and its tool calls' results), with a new
user message next: another model, another instruction, without paying again
for the steps before it or running their tools again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.client import WorkflowHistory
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Replayer

from onward.connection import DATA_CONVERTER
from onward.contracts import (
    AGENT_WORKFLOW,
    INPUT_CHECK_WORKFLOW,
    SESSION_WORKFLOW,
    Message,
    StepRecord,
)
from onward.encryption import EncryptionError
from onward.errors import InvalidInput, OnwardError, StoreError
from onward.plugin import pass_onward_through
from onward.text import counted
from onward.workflows import AgentWorkflow, InputCheckWorkflow, SessionWorkflow

__all__ = [
    "EXPORT_FORMAT",
    "ExportedHistory",
    "Replayed",
    "RunExport",
    "export_counts",
    "fork_point",
    "histories_in_file",
    "replay_histories",
    "replies_through",
    "run_id_of",
]

EXPORT_FORMAT = 1
"""The version of :class:`RunExport`'s shape (``onward_export`` in the document)."""
_WORKFLOW_TYPES = frozenset({AGENT_WORKFLOW, SESSION_WORKFLOW, INPUT_CHECK_WORKFLOW})


class ExportedHistory(BaseModel):
    """One run of a chain (a run continued as new has several) and its event history."""

    run_id: str
    history: dict[str, Any] = Field(
        description="Temporal's JSON of the history (as `temporal workflow show --output "
        "json` writes it); payloads as the server keeps them (encrypted, if they were)"
    )


class RunExport(BaseModel):
    """A run, whole: what ``onward export`` writes and ``onward replay --file`` reads."""

    onward_export: int = EXPORT_FORMAT
    workflow_id: str
    workflow_type: str
    status: str = Field(description="Temporal's status of the latest run: running, completed...")
    input: Any = Field(default=None, description="the input the chain's first run was started with")
    result: dict[str, Any] | None = Field(
        default=None, description="the run's result (AgentResult); None while it runs"
    )
    steps: list[StepRecord] = Field(default_factory=list, description="the whole step log")
    steps_missing: str | None = Field(
        default=None, description="which steps the log lacks and why (None: it is whole)"
    )
    messages: list[Message] | None = Field(
        default=None,
        description="the conversation, from the transcript store; None: it cannot be read",
    )
    messages_missing: str | None = Field(
        default=None, description="why the conversation is not here (None: it is)"
    )
    histories: list[ExportedHistory] = Field(
        default_factory=list, description="each run of the chain, first first"
    )

    def workflow_histories(self) -> list[WorkflowHistory]:
        return [WorkflowHistory.from_json(self.workflow_id, run.history) for run in self.histories]


@dataclass(frozen=True)
class Replayed:
    """How one run's history replayed on this installation's workflows."""

    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    failure: str | None = None
    """None: it replays (a worker of this version goes on with it); else why not."""
    unreadable: bool = False
    """True: this process cannot read the history's payloads (``failure`` names the
    setting it lacks: the workers' ``ONWARD_ENCRYPTION_KEYS`` or ``ONWARD_PAYLOADS``),
    so it cannot say; not a change of the workflow's."""


async def replay_histories(histories: Iterable[WorkflowHistory]) -> list[Replayed]:
    """Replay each history on Onward's workflows as a worker of this installation would.

    A history of another workflow type is not replayed: its failure says so. One
    whose payloads this process cannot read (no keys, not the workers' payload
    store) is ``unreadable``.
    """
    replayer = Replayer(
        workflows=[AgentWorkflow, SessionWorkflow, InputCheckWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=pass_onward_through(None),
        runtime=_quiet_runtime(),
    )
    outcomes: list[Replayed] = []
    for history in histories:
        started = (
            history.events[0].workflow_execution_started_event_attributes
            if history.events
            else None
        )
        kind = started.workflow_type.name if started is not None else ""
        run_id = run_id_of(history)
        if kind not in _WORKFLOW_TYPES:
            why = f"not a run of Onward's (workflow type {kind or 'unknown'})"
            outcomes.append(Replayed(history.workflow_id, run_id, kind, len(history.events), why))
            continue
        with _logged_errors(run_id) as errors:
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        failure = None if result.replay_failure is None else _said(result.replay_failure)
        unread = next((found for found in map(_unreadable, errors) if found), None)
        if failure is not None and unread is not None:
            failure = f"cannot read its payloads here: {unread}"
        events = len(history.events)
        unreadable = unread is not None
        outcomes.append(Replayed(history.workflow_id, run_id, kind, events, failure, unreadable))
    return outcomes


_SDK_LOGGERS = ("temporalio.worker._workflow", "temporalio.worker._workflow_instance")
"""Where the SDK logs, with its traceback, an activation that failed before the workflow
decided anything (a payload it could not decode): a worker's log, not this answer's."""


@contextmanager
def _logged_errors(run_id: str) -> Iterator[list[BaseException]]:
    """The exceptions the SDK logs about run ``run_id`` while its history replays, kept
    instead of printed (a worker of this process goes on logging its own runs')."""
    errors: list[BaseException] = []

    def keep(record: logging.LogRecord) -> bool:
        if not run_id or run_id not in record.getMessage():
            return True
        if record.exc_info and record.exc_info[1] is not None:
            errors.append(record.exc_info[1])
        return False

    loggers = [logging.getLogger(name) for name in _SDK_LOGGERS]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield errors
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def _unreadable(error: BaseException) -> OnwardError | None:
    """The error (or its cause) that says a payload cannot be read by this process."""
    seen: BaseException | None = error
    chain: list[BaseException] = []
    while seen is not None and seen not in chain:
        if isinstance(seen, EncryptionError | StoreError):
            return seen
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def histories_in_file(path: Path) -> list[WorkflowHistory]:
    """The histories of an ``onward export`` file, or the one history of a Temporal JSON
    history file (named by the file, as it holds no workflow id).

    Raises:
        InvalidInput: the file cannot be read, or is neither.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidInput(f"cannot read {path}: {err}") from None
    if isinstance(document, dict) and "onward_export" in document:
        try:
            return RunExport.model_validate(document).workflow_histories()
        except ValueError as err:
            raise InvalidInput(f"{path} is not an export onward can read: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise InvalidInput(
            f"{path} is neither an `onward export` nor a Temporal history "
            '(`temporal workflow show --output json`: {"events": [...]})'
        )
    try:
        return [WorkflowHistory.from_json(path.stem, document)]
    except (json_format.ParseError, ValueError, KeyError, TypeError) as err:
        raise InvalidInput(f"{path} is not a history Temporal can read: {err}") from None


def run_id_of(history: WorkflowHistory) -> str:
    """The run id the history's first event names (its original execution's)."""
    if not history.events:
        return ""
    started = history.events[0].workflow_execution_started_event_attributes
    return started.original_execution_run_id or started.first_execution_run_id


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
"""The message in Core's debug rendering of a failed activation (``Failure { failure:
Some(Failure { message: "...", ... }) }``)."""


def _said(failure: BaseException) -> str:
    """A replay failure in one line: Core's own message when it gave one (the
    nondeterminism it found), else the failure's and its cause's."""
    text = str(failure) or type(failure).__name__
    found = _CORE_MESSAGE.search(text)
    if found:
        return found.group(1).replace('\\"', '"')
    cause = failure.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return " ".join(text.split())


_runtime: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """A Temporal runtime whose Core logs only errors, through Python logging: a run that
    does not replay is this module's answer, not a warning for the console."""
    global _runtime
    if _runtime is None:
        logs = LoggingConfig(
            filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
        _runtime = Runtime(telemetry=TelemetryConfig(logging=logs))
    return _runtime


def export_counts(export: RunExport) -> str:
    """What an export holds, in words (for ``onward export --output FILE``)."""
    messages = (
        "no messages (see messages_missing)"
        if export.messages is None
        else counted(len(export.messages), "message")
    )
    runs = counted(len(export.histories), "run")
    return f"{counted(len(export.steps), 'step')}, {messages}, the histories of {runs}"


def replies_through(steps: list[StepRecord], at_step: int) -> int:
    """How many replies a run's model gave in its first ``at_step`` steps: each step's
    but a summary of older turns' (``compaction``) and a failed call's.

    For a scripted run, also the turns of its script those steps played.
    """
    return sum(1 for step in steps[:at_step] if not step.compaction and step.error is None)


def fork_point(messages: list[Message], offset: int, steps: list[StepRecord], at_step: int) -> int:
    """How many of a run's transcript messages its conversation held at the end of step
    ``at_step``: through that step's reply and its tool calls' results.

    ``offset``: the messages the run began with from elsewhere (a session's, or the run
    it was forked from), before its own prompt. A step's reply is the transcript's next
    assistant message, except for a summary of older turns (``compaction``) and a model
    call that failed, which add none.

    Raises:
        InvalidInput: ``at_step`` is not a finished step, or the transcript holds fewer
            replies than the steps say (not the run's whole transcript).
    """
    if not 1 <= at_step <= len(steps):
        raise InvalidInput.at(
            ("at_step",),
            f"{at_step} is not a finished step of the run "
            f"(it has {counted(len(steps), 'finished step')})",
        )
    replies = replies_through(steps, at_step)
    seen = 0
    for index in range(offset, len(messages)):
        if messages[index].role != "assistant":
            continue
        seen += 1
        if seen == replies:
            end = index + 1
            while end < len(messages) and messages[end].role == "tool":
                end += 1
            return end
    if replies == 0:
        raise InvalidInput.at(
            ("at_step",), f"step {at_step} and those before it have no reply to go on from"
        )
    raise InvalidInput.at(
        ("at_step",),
        f"the transcript holds {seen} repl{'y' if seen == 1 else 'ies'}, fewer than "
        f"the run's first {counted(at_step, 'step')} made",
    )
