"""Talking to Temporal from a command: the connection, run handles, and errors as messages.

Every client command goes through a :class:`Session`, so they all connect the
same way (``onward.connection.connect``: ``TEMPORAL_ADDRESS`` and the
envconfig profile, overridable with ``--address``/``--namespace``) and turn
the same Temporal errors into the same one-line messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, Interceptor, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from onward.connection import ConnectionFailed, connect, connect_config
from onward.contracts import AgentResult
from onward.starter.errors import EXIT_FAILED, EXIT_USAGE, CliError
from onward.workflows import AgentWorkflow

__all__ = ["AgentHandle", "Session", "from_rpc_error"]

AgentHandle = WorkflowHandle[AgentWorkflow, AgentResult]
"""A handle on one agent run, typed so signals, queries and updates are checked."""


@dataclass
class Session:
    """What every client command needs: where Temporal is, the task queue, and a client."""

    task_queue: str
    address: str | None = None
    namespace: str | None = None
    following: str | None = None
    """The id of the run being followed, so Ctrl-C can say how to pick it up again."""
    interceptors: Sequence[Interceptor] = ()
    """Tracing: a run started with the interceptor is one trace, client to activities."""
    _client: Client | None = field(default=None, repr=False)

    def _overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if self.address:
            overrides["target_host"] = self.address
        if self.namespace:
            overrides["namespace"] = self.namespace
        return overrides

    def where(self) -> str:
        """The address commands connect to, for messages."""
        if self.address:
            return self.address
        try:
            return str(connect_config()["target_host"])
        except Exception:  # noqa: BLE001 - a bad profile file must not hide the real error
            return "the configured address"

    async def client(self) -> Client:
        """Connect once; an unreachable server is a :class:`CliError` (exit 2)."""
        if self._client is None:
            try:
                self._client = await connect(
                    interceptors=list(self.interceptors), **self._overrides()
                )
            except ConnectionFailed as err:
                raise CliError(
                    f"cannot reach Temporal at {self.where()}; start it with 'onward dev'"
                ) from err
            except ValueError as err:  # e.g. a malformed profile file or address
                raise CliError(f"bad Temporal connection settings: {err}") from err
        return self._client

    async def handle(self, workflow_id: str) -> AgentHandle:
        """A handle on the latest run with ``workflow_id`` (checked on first use)."""
        client = await self.client()
        return client.get_workflow_handle_for(AgentWorkflow.run, workflow_id)


def from_rpc_error(err: RPCError, workflow_id: str | None, where: str) -> CliError:
    """The one-line message for a Temporal RPC error."""
    if err.status == RPCStatusCode.NOT_FOUND:
        if workflow_id and "already completed" in err.message:
            return CliError(f"run {workflow_id} has already ended", EXIT_FAILED)
        if workflow_id:
            return CliError(f"no run with id {workflow_id}", EXIT_USAGE)
        return CliError(f"not found: {err.message}", EXIT_USAGE)
    if err.status == RPCStatusCode.UNAVAILABLE:
        return CliError(
            f"lost connection to Temporal at {where} ({err.message}); "
            "is it running? start it with 'onward dev'",
            EXIT_USAGE,
        )
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        return CliError(f"Temporal rejected the request: {err.message}", EXIT_USAGE)
    return CliError(f"Temporal error ({err.status.name}): {err.message}", EXIT_FAILED)
