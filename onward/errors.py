"""The errors a user of Onward may see, in one small hierarchy.

Every error Onward raises on purpose is an :class:`OnwardError`::

    OnwardError
    ├── ConnectionFailed      Temporal cannot be reached (or the settings are bad)
    ├── RunNotFound           no run with that id
    ├── RunAlreadyExists      a run with that id is already running
    ├── RunEnded              the run has ended: it takes no more signals or updates
    ├── InvalidInput          input rejected client-side, before anything started
    │   ├── ArtifactNotFound  the run has no file at that path
    │   ├── ScheduleNotFound  no schedule with that id
    │   └── IdempotencyKeyReused  the key was sent before with another request
    ├── RequestRejected       the run refused an update (e.g. ``extend_budget``)
    ├── NoWorker              no worker polls the run's task queue, or none answered
    │   └── UpdateNotTaken    no worker took an update in time; the server keeps it
    │       └── MessageNotTaken   a session message, likewise
    ├── UnexpectedResponse    Temporal or a worker answered with something unexpected
    ├── TemporalError         any other error Temporal reported
    ├── StoreError            the store (``ONWARD_STORE``) cannot be reached or refused an operation
    ├── CliError              (``onward.starter.errors``) a problem of the ``onward`` command
    └── ToolError             a tool failed; the model is told (worker side)
        └── WorkspaceError
    └── ToolRetryableError    a tool failed transiently (worker side)

Workflow failures surface to clients as Temporal ``ApplicationError``s whose
``type`` is one of the names below, so clients can tell them apart without
importing this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = [
    "IDEMPOTENCY_KEY_REUSED",
    "INVALID_INPUT",
    "MODEL_NOT_PRICED",
    "PROVIDER_NOT_CONFIGURED",
    "ArtifactNotFound",
    "ConnectionFailed",
    "IdempotencyKeyReused",
    "InvalidInput",
    "MessageNotTaken",
    "NoWorker",
    "OnwardError",
    "RequestRejected",
    "RunAlreadyExists",
    "RunEnded",
    "RunNotFound",
    "ScheduleNotFound",
    "SessionClosed",
    "SettingsError",
    "StoreError",
    "TemporalError",
    "ToolError",
    "ToolRetryableError",
    "UnexpectedResponse",
    "UpdateNotTaken",
    "WorkspaceError",
    "format_validation_error",
    "named_problem",
    "validated",
]

INVALID_INPUT = "InvalidInput"
"""ApplicationError type of a run whose input was rejected before any work."""

DEADLINE_PASSED = "DeadlinePassed"
"""ApplicationError type of a call a worker would have started after its run's deadline
(``not_after``): it did not start it. The run ends it like a call its timer cut off, or
calls again if ``extend_budget`` moved the deadline meanwhile."""

PROVIDER_NOT_CONFIGURED = "ProviderNotConfigured"
"""ApplicationError type of a model call to a provider this worker does not have."""

IDEMPOTENCY_KEY_REUSED = "IdempotencyKeyReused"
"""ApplicationError type of a session message refused: its idempotency key came before
with another message."""

MODEL_NOT_PRICED = "ModelNotPriced"
"""ApplicationError type of a model call refused before it was made: its run keeps a cost
budget (``require_price``) and the model has no price. The run ends ``budget_exceeded``."""


class OnwardError(Exception):
    """Base of every error Onward raises on purpose."""


class ConnectionFailed(OnwardError):
    """Temporal could not be reached; the message says where we looked.

    Attributes:
        address: the ``host:port`` tried, when known.
    """

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class RunNotFound(OnwardError):
    """No run has this id (in this namespace).

    Attributes:
        run_id: the id asked for.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id}")
        self.run_id = run_id


class RunAlreadyExists(OnwardError):
    """A run with this id is already running; ids of running runs are unique.

    Attributes:
        run_id: the id asked for.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"a run with id {run_id} is already running")
        self.run_id = run_id


class RunEnded(OnwardError):
    """The run has ended, so it takes no signal or update any more.

    Attributes:
        run_id: the run's id.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has already ended")
        self.run_id = run_id


class InvalidInput(OnwardError):
    """Input rejected before anything started.

    Attributes:
        problems: pydantic's error list (``loc``, ``msg``, ``input`` ...), one per problem.
    """

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    @classmethod
    def from_validation(cls, err: ValidationError, what: str = "invalid input") -> InvalidInput:
        """One line per problem, each naming the field."""
        details = err.errors(include_url=False)
        lines = []
        problems = []
        for item in details:
            loc, message = named_problem(item["loc"], item["msg"])
            problems.append({**item, "loc": loc, "msg": message})
            lines.append(f"{'.'.join(str(part) for part in loc) or 'input'}: {message}")
        return cls(f"{what}: " + "; ".join(lines), problems)

    @classmethod
    def at(
        cls, loc: Sequence[str | int], why: str, kind: str = "value_error", name: str = ""
    ) -> Self:
        """One problem at ``loc`` (pydantic's form): ``"<name>: <why>"``, the name the last
        part of ``loc`` unless given (an empty ``loc``: the input as a whole)."""
        label = name or (str(loc[-1]) if loc else "input")
        return cls(f"{label}: {why}", [{"loc": tuple(loc), "msg": why, "type": kind}])


_NAMED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): (.+)", re.S)


def named_problem(loc: Sequence[str | int], message: str) -> tuple[tuple[str | int, ...], str]:
    """A problem's location and message, the location made whole where the message names it.

    A check of several fields (a model validator raising ValueError) reports at the
    model's location, ``()`` or FastAPI's ``("body",)``, and names its field first:
    ``fallback_models.1: 'x' is listed twice; ...`` is at ``(..., "fallback_models",
    1)`` and says ``'x' is listed twice; ...``. Other problems are as given.
    """
    raised = message.startswith("Value error, ")  # pydantic's, from a ValueError
    message = message.removeprefix("Value error, ")
    found = _NAMED.fullmatch(message)
    if not raised or found is None or tuple(loc) not in ((), ("body",)):
        return tuple(loc), message
    path = tuple(int(part) if part.isdigit() else part for part in found[1].split("."))
    return (*loc, *path), found[2]


_Model = TypeVar("_Model", bound=BaseModel)


def validated(model: type[_Model], value: object, what: str = "invalid input") -> _Model:
    """``value`` as a ``model`` (as it is when it is one already).

    Raises:
        InvalidInput: naming each field that is wrong.
    """
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise InvalidInput.from_validation(err, what) from err


class ArtifactNotFound(InvalidInput):
    """The run has no artifact at that path (the HTTP API answers 404).

    Attributes:
        run_id: the run asked about.
        path: the path asked for.
    """

    def __init__(self, run_id: str, path: str) -> None:
        super().__init__(f"path: run {run_id} has no artifact {path!r}")
        self.run_id = run_id
        self.path = path


class ScheduleNotFound(InvalidInput):
    """No schedule has that id (the HTTP API answers 404; the CLI exits 2, as for bad input).

    Attributes:
        schedule_id: the id asked about.
    """

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id {schedule_id}")
        self.schedule_id = schedule_id


class IdempotencyKeyReused(InvalidInput):
    """An idempotency key was sent before with another request (the HTTP API answers 422).

    A repeat must be the same request; a different one needs a new key.
    """


class RequestRejected(OnwardError):
    """The run refused a request (its update validator said no); the message says why."""


class NoWorker(OnwardError):
    """No worker polls the run's task queue, or none answered in time.

    Attributes:
        task_queue: the task queue with no worker, when known.
    """

    def __init__(self, message: str, task_queue: str | None = None) -> None:
        super().__init__(message)
        self.task_queue = task_queue


class UpdateNotTaken(NoWorker):
    """No worker took an update (an approval, a budget extension) in time, but the
    server keeps it.

    Unlike a plain :class:`NoWorker` (nothing was sent), a worker that takes the
    run up may still apply it: read the run's status before sending it again, or
    it applies twice (an approval without a call id, to whatever waits then). An
    approval naming its call id may be sent again as it was: it is the same update.

    Attributes:
        repeatable: sending it again as it was is safe (an approval naming its call, a
            message with an idempotency key): the run answers the same update once.
    """

    def __init__(
        self, message: str, task_queue: str | None = None, *, repeatable: bool = False
    ) -> None:
        super().__init__(message, task_queue)
        self.repeatable = repeatable


class MessageNotTaken(UpdateNotTaken):
    """No worker took a session message in time, but the server keeps it.

    The next worker to take the session up answers the message (a close sent
    after it waits for it): read the session's turns before sending it again,
    or it is answered twice (or send it with an idempotency key).
    """


class UnexpectedResponse(OnwardError):
    """Temporal or a worker answered with something of an unexpected shape."""


class TemporalError(OnwardError):
    """Another error reported by Temporal.

    Attributes:
        status: the gRPC status name (``INVALID_ARGUMENT``, ``PERMISSION_DENIED`` ...).
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class SettingsError(OnwardError, ValueError):
    """A setting in the environment, a profile file or a flag is bad; the message names it.

    A ``ValueError`` too, as the checks that raise it raised before.
    """


class StoreError(OnwardError):
    """The store (``ONWARD_STORE``: transcripts, memory, artifacts) cannot be reached or
    refused an operation; the message says which store and why."""


class ToolError(OnwardError):
    """A tool failed in a way the model should be told about; the call is not retried."""


class ToolRetryableError(OnwardError):
    """A tool failed transiently; Temporal retries the call within the tool's retry policy."""


class WorkspaceError(ToolError):
    """A file tool was asked for a path outside its workspace."""


def format_validation_error(tool_name: str, err: ValidationError) -> str:
    """One line per problem, naming the argument: readable by a model and a person."""
    problems = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return f"invalid arguments for {tool_name}: " + "; ".join(problems)


class SessionClosed(RequestRejected):
    """The session is closed (``close``, or idle past ``idle_timeout_s``): it takes no message.

    Attributes:
        session_id: the session's id.
    """

    def __init__(self, session_id: str, message: str | None = None) -> None:
        super().__init__(message or f"session {session_id} is closed")
        self.session_id = session_id
