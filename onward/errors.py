"""The errors a user of Onward may see, in one small hierarchy.

Workflow failures surface to clients as Temporal ``ApplicationError``s whose
``type`` is one of the names below, so clients can tell them apart without
importing this module.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "INVALID_INPUT",
    "PROVIDER_NOT_CONFIGURED",
    "OnwardError",
    "ToolError",
    "ToolRetryableError",
    "WorkspaceError",
    "format_validation_error",
]

INVALID_INPUT = "InvalidInput"
"""ApplicationError type of a run whose input was rejected before any work."""

PROVIDER_NOT_CONFIGURED = "ProviderNotConfigured"
"""ApplicationError type of a model call to a provider this worker does not have."""


class OnwardError(Exception):
    """Base of every error Onward raises on purpose."""


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
