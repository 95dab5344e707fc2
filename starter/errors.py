"""Exit codes of the ``onward`` command, its own error type, and the code of every error.

A command either returns an exit code or raises an
:class:`~onward.errors.OnwardError` (the client's errors, or :class:`CliError`
for problems of the command line itself); ``cli`` prints the message as one
line on stderr, never a traceback, and exits with :func:`exit_code_of`.
"""

from __future__ import annotations

from onward.contracts import AgentState
from onward.errors import (
    ConnectionFailed,
    InvalidInput,
    OnwardError,
    RunAlreadyExists,
    RunNotFound,
    SettingsError,
    TemporalError,
)

__all__ = [
    "EXIT_BUDGET_EXCEEDED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "exit_code_for",
    "exit_code_of",
]

EXIT_OK = 0
"""The run completed, or the command did what it was asked."""
EXIT_FAILED = 1
"""The run failed or was cancelled, or the workflow refused the request."""
EXIT_USAGE = 2
"""Bad flags or input, Temporal unreachable, or no run with that id."""
EXIT_BUDGET_EXCEEDED = 3
"""The run ended because a budget ran out."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: the command stopped (a run it was following goes on)."""

_BY_STATE: dict[str, int] = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "cancelled": EXIT_FAILED,
    "budget_exceeded": EXIT_BUDGET_EXCEEDED,
}


def exit_code_for(state: AgentState) -> int:
    """The exit code of a command that reports a run ending in ``state``."""
    return _BY_STATE.get(state, EXIT_FAILED)


class CliError(OnwardError):
    """A problem of the command line to report as ``onward: <message>`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


_USAGE_ERRORS = (ConnectionFailed, RunNotFound, RunAlreadyExists, InvalidInput, SettingsError)


def exit_code_of(err: OnwardError) -> int:
    """The exit code of a command that stopped on ``err``.

    2 for what the user can fix in the command (bad input, unknown id,
    unreachable server, a request Temporal rejects as invalid), 1 for the rest
    (the run ended, refused the request, no worker, ...).
    """
    if isinstance(err, CliError):
        return err.exit_code
    if isinstance(err, _USAGE_ERRORS):
        return EXIT_USAGE
    if isinstance(err, TemporalError) and err.status == "INVALID_ARGUMENT":
        return EXIT_USAGE
    return EXIT_FAILED
