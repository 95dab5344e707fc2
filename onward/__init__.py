"""Onward: durable AI agents on Temporal.

The public protocol lives in :mod:`onward.contracts`; pure run bookkeeping
(budgets, pricing, the conversation) lives beside it so that workflows,
activities and clients share one definition of each. Installed, Onward is this
one import name: ``onward.workflows`` (deterministic code), ``onward.activities``
(all I/O), ``onward.worker`` (wiring), ``onward.client`` (the Python API:
``OnwardClient``) and ``onward.starter`` (the CLI, an adapter over the client).

The names below are imported lazily: the Temporal workflow sandbox imports this
package before a workflow module, and an eager import here would give the
sandbox its own copy of the contract models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onward.client import OnwardClient
    from onward.contracts import (
        AGENT_WORKFLOW,
        DEFAULT_TASK_QUEUE,
        AgentInput,
        AgentResult,
        AgentStatus,
        Budget,
    )
    from onward.errors import (
        ConnectionFailed,
        IdempotencyKeyReused,
        InvalidInput,
        MessageNotTaken,
        NoWorker,
        OnwardError,
        RequestRejected,
        RunAlreadyExists,
        RunEnded,
        RunNotFound,
        ScheduleNotFound,
        SessionClosed,
        StoreError,
        TemporalError,
        ToolError,
        ToolRetryableError,
        UnexpectedResponse,
        UpdateNotTaken,
        WorkspaceError,
    )
    from onward.plugin import OnwardPlugin
    from onward.script import run_main

__all__ = [
    "AGENT_WORKFLOW",
    "DEFAULT_TASK_QUEUE",
    "AgentInput",
    "AgentResult",
    "AgentStatus",
    "Budget",
    "ConnectionFailed",
    "IdempotencyKeyReused",
    "InvalidInput",
    "MessageNotTaken",
    "NoWorker",
    "OnwardClient",
    "OnwardError",
    "OnwardPlugin",
    "RateLimit",
    "RequestRejected",
    "RunAlreadyExists",
    "RunEnded",
    "RunNotFound",
    "ScheduleNotFound",
    "SessionClosed",
    "SessionInput",
    "SessionReply",
    "StoreError",
    "TemporalError",
    "ToolError",
    "ToolRetryableError",
    "UnexpectedResponse",
    "UpdateNotTaken",
    "WorkspaceError",
    "run_main",
]

_LAZY: dict[str, str] = {
    "AGENT_WORKFLOW": "onward.contracts",
    "DEFAULT_TASK_QUEUE": "onward.contracts",
    "AgentInput": "onward.contracts",
    "AgentResult": "onward.contracts",
    "AgentStatus": "onward.contracts",
    "Budget": "onward.contracts",
    "ConnectionFailed": "onward.errors",
    "IdempotencyKeyReused": "onward.errors",
    "InvalidInput": "onward.errors",
    "MessageNotTaken": "onward.errors",
    "NoWorker": "onward.errors",
    "OnwardClient": "onward.client",
    "OnwardError": "onward.errors",
    "RateLimit": "onward.activities.rate_limits",
    "RequestRejected": "onward.errors",
    "RunAlreadyExists": "onward.errors",
    "RunEnded": "onward.errors",
    "RunNotFound": "onward.errors",
    "ScheduleNotFound": "onward.errors",
    "StoreError": "onward.errors",
    "SessionClosed": "onward.errors",
    "SessionInput": "onward.contracts",
    "SessionReply": "onward.contracts",
    "TemporalError": "onward.errors",
    "ToolError": "onward.errors",
    "ToolRetryableError": "onward.errors",
    "UnexpectedResponse": "onward.errors",
    "UpdateNotTaken": "onward.errors",
    "WorkspaceError": "onward.errors",
    "OnwardPlugin": "onward.plugin",
    "run_main": "onward.script",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onward' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
