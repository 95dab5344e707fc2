"""Tools from MCP servers: one session a server, kept open while the worker runs.

At start each configured server is connected (a process for a stdio server, a
session for a streamable HTTP one), its tools are listed and become Onward
tools named ``<server>_<tool>``, with the server's input schema and
description. A call is then an ordinary ``execute_tool`` activity whose
function sends ``tools/call`` on that session:

* the result's text content, joined, is the tool's result;
* a result with ``isError`` is a :class:`~onward.errors.ToolError` (the model
  is told, the run goes on), as is a JSON-RPC error the server answers with;
* a dropped connection or a crashed server process ends the session: the call
  raises :class:`~onward.errors.ToolRetryableError`, so Temporal retries it
  within the tool's attempts, and the retry opens a new session.

The SDK's sessions run on anyio task groups, whose context managers must be
left by the task that entered them; each session therefore lives in a task of
its own (:meth:`McpConnection._hold`), and calls from activity tasks only send
requests on it. The ``mcp`` package is imported here alone, so a worker
without MCP servers does not pay for it (about 0.4 s).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared import _httpx_utils
from pydantic import BaseModel, ConfigDict

from onward.activities.tools.context import ToolContext
from onward.activities.tools.loading import ToolLoadError, register_tools
from onward.activities.tools.mcp_config import McpServerConfig
from onward.activities.tools.registry import Tool, ToolRegistry, is_tool_name
from onward.errors import ToolError, ToolRetryableError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "McpArguments",
    "McpConnection",
    "McpServerError",
    "McpServers",
    "result_text",
]

CONNECT_TIMEOUT_S = 30.0
"""How long a server may take to start and answer the handshake (and its tool list)."""
CLOSE_TIMEOUT_S = 5.0
"""How long a session gets to close (the SDK ends a stdio process it has to)."""
READ_MARGIN_S = 30.0
"""How much longer than a call's ``timeout_s`` an HTTP response may stay silent: the
call's own timeout ends it first, as a timeout of the call, not of the session."""

_CONNECTION_LOST = (
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,
)
"""What a call raises when the session, not the server's answer, failed."""

log = logging.getLogger("onward.mcp")

# The SDK's HTTP client logs every request at INFO with its URL, whose query may hold a
# key from the worker's environment (``?key=${KEY}``; ``where`` leaves it out for that):
# a line a call, so left to WARNING and above unless the application set a level.
_http_log = logging.getLogger("httpx2")
if _http_log.level == logging.NOTSET:
    _http_log.setLevel(logging.WARNING)


class McpServerError(ToolLoadError):
    """An MCP server cannot be reached at start, or its tools cannot be offered."""


class McpArguments(BaseModel):
    """A call's arguments as the model sent them: the server checks them against its schema."""

    model_config = ConfigDict(extra="allow")


class McpConnection:
    """One session with one MCP server, opened again after it drops.

    Args:
        config: The server.
        connect_timeout_s: How long starting a session may take.
    """

    def __init__(self, config: McpServerConfig, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.config = config
        self._connect_timeout_s = connect_timeout_s
        self._client: Client | None = None
        self._closing: asyncio.Event | None = None
        self._holder: asyncio.Task[None] | None = None
        self._http: _HttpTransport | None = None
        self._opening: asyncio.Lock | None = None

    async def session(self) -> Client:
        """The open session, opening one if there is none.

        Raises:
            McpServerError: the server cannot be started or reached, or fails the handshake.
        """
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # calls at once while a session drops open one, not several
            if self._client is not None:
                return self._client
            target = _target(self.config)
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            closing = asyncio.Event()
            holder = asyncio.create_task(
                self._hold(target, ready, closing), name=f"mcp:{self.config.name}"
            )
            try:
                client = await asyncio.wait_for(asyncio.shield(ready), self._connect_timeout_s)
            except TimeoutError:
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)
                raise McpServerError(
                    f"{self.config.where}: no answer to the handshake within "
                    f"{self._connect_timeout_s:g} s"
                ) from None
            except asyncio.CancelledError:
                # The call was given up (its run cancelled, its attempt timed out): the
                # session it was opening would be held by no one, its process running
                # beside the one the next call starts, until the worker stops.
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)
                raise
            except Exception as err:
                await asyncio.gather(holder, return_exceptions=True)
                reason = _reason(err)
                if isinstance(target, _HttpTransport) and target.error_status is not None:
                    reason += f" (HTTP {target.error_status})"  # the SDK's message has none
                raise McpServerError(f"{self.config.where}: cannot connect: {reason}") from err
            self._client, self._closing, self._holder = client, closing, holder
            self._http = target if isinstance(target, _HttpTransport) else None
            return client

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server lists, all pages.

        Raises:
            McpServerError: the server cannot be reached or does not answer the listing.
        """
        client = await self.session()
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        return tools
        except Exception as err:
            raise McpServerError(f"{self.config.where}: tools/list failed: {_reason(err)}") from err

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; its result's text, or a tool error the model is shown.

        Raises:
            ToolError: the server reported the call as failed (``isError``) or refused it.
            ToolRetryableError: the session was lost (a new one is opened on the retry),
                or the server cannot be reached now.
        """
        name = self.config.name
        try:
            client = await self.session()
        except McpServerError as err:
            raise ToolRetryableError(str(err)) from err
        http = self._http  # the session's own: another call may replace it meanwhile
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as err:
            if err.code == mcp_types.CONNECTION_CLOSED or (http is not None and http.ended):
                await self._drop(client)
                raise ToolRetryableError(
                    f"MCP server {name!r}: the session ended during the call ({err.message}); "
                    "reconnecting"
                ) from err
            raise ToolError(f"MCP server {name!r} refused the call: {err.message}") from err
        except _CONNECTION_LOST as err:
            await self._drop(client)
            raise ToolRetryableError(
                f"MCP server {name!r}: the connection failed during the call "
                f"({_reason(err)}); reconnecting"
            ) from err
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"MCP server {name!r}: the tool reported an error")
        return text

    async def close(self) -> None:
        """End the session (and a stdio server's process); a later call opens another."""
        if self._client is not None:
            await self._drop(self._client)

    async def _drop(self, client: Client) -> None:
        """End the session ``client`` belongs to, if it is still the current one."""
        if self._client is not client:
            return  # another call dropped it already
        closing, holder = self._closing, self._holder
        self._client = self._closing = self._holder = self._http = None
        assert closing is not None and holder is not None
        closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(holder), CLOSE_TIMEOUT_S)
        except TimeoutError:
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
        except Exception:  # noqa: BLE001 - a broken session's exit is logged by _hold
            pass

    async def _hold(
        self, target: Any, ready: asyncio.Future[Client], closing: asyncio.Event
    ) -> None:
        """Open the session, hand it over, and keep it until ``closing`` (in this one task)."""
        client: Client | None = None
        try:
            # No response cache: the tools are listed once, and results are never reused.
            async with Client(target, cache=None) as entered:
                client = entered
                ready.set_result(entered)
                await closing.wait()
        except asyncio.CancelledError:
            ready.cancel()  # whoever waited for it has given up
            raise
        except Exception as err:  # noqa: BLE001 - the SDK's task groups raise ExceptionGroups
            if not ready.done():
                ready.set_exception(err)
            else:
                log.warning("%s: session ended: %s", self.config.where, _reason(err))
        finally:
            if client is not None and self._client is client:
                # Ended by itself (its transport failed): the next call opens another.
                self._client = self._closing = self._holder = self._http = None


def _target(config: McpServerConfig) -> StdioServerParameters | _HttpTransport:
    """What the SDK's client connects to for ``config``."""
    if config.command is not None:
        return StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env), cwd=config.cwd
        )
    assert config.url is not None
    # The SDK's client gives up a response silent for 5 minutes, and the session with
    # it (every call on it fails): a call may be silent for as long as it may last.
    read_s = max(_httpx_utils.MCP_DEFAULT_SSE_READ_TIMEOUT, config.timeout_s + READ_MARGIN_S)
    return _HttpTransport(config.url, config.headers, read_s)


class _HttpTransport:
    """``streamable_http_client`` with the configured headers, noting the HTTP errors it gets.

    The SDK turns an error status into a JSON-RPC error without the status. Two
    matter here: any status, to say why a connection was refused (a 401 of a
    wrong key), and a 404 to a request in a session, by which a server of the
    session-based (pre-2026) protocol says it no longer has the session (it
    restarted): the spec's answer is a new session.
    """

    def __init__(self, url: str, headers: Mapping[str, str], read_timeout_s: float) -> None:
        self.error_status: int | None = None
        self.ended = False
        timeout = httpx2.Timeout(_httpx_utils.MCP_DEFAULT_TIMEOUT, read=read_timeout_s)
        self._http = _httpx_utils.create_mcp_http_client(headers=dict(headers), timeout=timeout)
        self._http.event_hooks["response"].append(self._note)
        self._streams = streamable_http_client(url, http_client=self._http)

    async def _note(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.error_status = response.status_code
        if response.status_code == 404 and "mcp-session-id" in response.request.headers:
            self.ended = True

    async def __aenter__(self) -> Any:
        await self._http.__aenter__()
        try:
            return await self._streams.__aenter__()
        except BaseException:
            await self._http.__aexit__(None, None, None)
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        try:
            return await self._streams.__aexit__(kind, error, traceback)
        finally:
            await self._http.__aexit__(None, None, None)


def result_text(result: mcp_types.CallToolResult) -> str:
    """A call's result as the model reads it: its text blocks, joined by newlines.

    A block of another kind is named in brackets (an image is not sent on); a
    result with only structured content is that content as JSON.
    """
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{block.type} ({getattr(block, 'mime_type', None) or 'binary'})]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _reason(err: BaseException) -> str:
    """The first error inside ``err``'s exception groups, as one line."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = str(err) or type(err).__name__
    if isinstance(err, MCPError):
        text = err.message
    elif isinstance(err, OSError) and err.strerror:
        text = err.strerror + (f": {err.filename}" if err.filename else "")
    return f"{type(err).__name__}: {text}" if not isinstance(err, MCPError) else text


class McpServers:
    """The sessions with a worker's MCP servers, and the tools they offer.

    An async context manager that may be entered several times (by every
    worker sharing one plugin, and by ``onward worker`` before it connects):
    the first entry connects every server and lists its tools, the last exit
    closes the sessions. The tools are made at the first entry and kept.
    """

    def __init__(
        self, configs: Sequence[McpServerConfig], connect_timeout_s: float = CONNECT_TIMEOUT_S
    ) -> None:
        names = [config.name for config in configs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise McpServerError(f"two MCP servers are named {repeated[0]!r}")
        self._connections = [McpConnection(config, connect_timeout_s) for config in configs]
        self._tools: list[Tool] | None = None
        self._entered = 0
        self._lock: asyncio.Lock | None = None

    @property
    def configs(self) -> list[McpServerConfig]:
        """The servers, in the configured order."""
        return [connection.config for connection in self._connections]

    async def __aenter__(self) -> list[Tool]:
        """Connect the servers (on the first entry) and return their tools.

        Raises:
            McpServerError: a server cannot be reached, or one of its tools cannot be
                offered under a model-acceptable name. (A server listing no tools is
                only logged: it may have none to offer yet.)
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._entered == 0:
                try:
                    # Every server is waited for, so none is left opening when they close.
                    listed = await asyncio.gather(
                        *(connection.list_tools() for connection in self._connections),
                        return_exceptions=True,
                    )
                    for failure in listed:
                        if isinstance(failure, BaseException):
                            raise failure
                    listings = [item for item in listed if not isinstance(item, BaseException)]
                    for connection, listing in zip(self._connections, listings, strict=True):
                        if not listing:  # a wrong path or filter: runs naming its tools fail
                            log.warning(
                                "%s lists no tools; it offers none", connection.config.where
                            )
                    if self._tools is None:
                        self._tools = [
                            _mcp_tool(connection, listed)
                            for connection, listing in zip(self._connections, listings, strict=True)
                            for listed in listing
                        ]
                except BaseException:
                    await self._close()
                    raise
            self._entered += 1
            assert self._tools is not None
            return list(self._tools)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._lock is not None
        async with self._lock:
            self._entered -= 1
            if self._entered == 0:
                await self._close()

    async def _close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._connections))

    @staticmethod
    def register(registry: ToolRegistry, tools: Sequence[Tool]) -> None:
        """Add the servers' ``tools`` to ``registry`` (again on a later entry: no change).

        Raises:
            ToolLoadError: a tool's name is another's (a built-in's, a user tool's or
                another server's): the message says to rename the server, as
                ``@tool(name=...)``, the registry's advice, cannot rename it.
        """
        seen: dict[str, Tool] = {}
        for item in tools:
            taken = seen.get(item.name) or registry.get(item.name)
            if taken is not None and taken is not item:
                other = "the built-in tool" if taken.builtin else f"one from {taken.module}"
                raise ToolLoadError(
                    f"two tools are named {item.name!r}: {other}, one from {item.module}; "
                    "give the MCP server another name (its tools are offered as "
                    "<server>_<tool>)"
                )
            seen[item.name] = item
        register_tools(registry, tools)


def _mcp_tool(connection: McpConnection, listed: mcp_types.Tool) -> Tool:
    """The Onward tool ``<server>_<tool>`` calling ``listed`` on ``connection``.

    Raises:
        McpServerError: the combined name is one model APIs refuse.
    """
    config = connection.config
    name = f"{config.name}_{listed.name}"
    if not is_tool_name(name):
        raise McpServerError(
            f"{config.where}: its tool {listed.name!r} would be offered as {name!r}, which "
            "model APIs refuse (1-64 letters, digits, '_' or '-'); the server must rename "
            "the tool, or give the server a shorter name"
        )
    remote = listed.name

    async def call_mcp_tool(args: McpArguments, ctx: ToolContext) -> str:
        return await connection.call(remote, args.model_dump())

    call_mcp_tool.__module__ = f"MCP server {config.name!r}"  # named so in clashes
    return Tool(
        name=name,
        description=inspect.cleandoc(listed.description or listed.title or ""),
        args_model=McpArguments,
        fn=call_mcp_tool,
        timeout_s=config.timeout_s,
        max_attempts=config.max_attempts,
        uses_workspace=False,
        parameters=_parameters(listed.input_schema),
    )


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """The server's input schema, as model APIs take one (an object with properties)."""
    return {"type": "object", "properties": {}, **schema}
