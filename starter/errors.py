"""Exit codes of the ``onward`` command and the one error type commands raise.

A command either returns an exit code or raises :class:`CliError`; ``cli``
prints the message as one line on stderr, never a traceback.
"""

from __future__ import annotations

from onward.contracts import AgentState

__all__ = [
    "EXIT_BUDGET_EXCEEDED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "exit_code_for",
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


class CliError(Exception):
    """A problem to report as ``onward: <message>`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
