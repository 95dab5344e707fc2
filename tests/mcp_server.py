"""A small MCP server for the tests, on the SDK's MCPServer (FastMCP's name in mcp 2).

``python tests/mcp_server.py`` serves it on stdin/stdout; :class:`HttpApp` is the
same server as a streamable HTTP app (the tests run it with uvicorn on loopback).
``MCP_TEST_BAD_NAME=1`` adds a tool whose name no model API takes;
``MCP_TEST_ALSO=NAME`` a tool of that name;
``MCP_TEST_SLOW_START=S`` waits S seconds before answering the handshake;
``MCP_TEST_CANCEL_LOG=FILE`` notes there each ``wait`` the client cancels.
"""

from __future__ import annotations

import json
import logging
import os
import time

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import Message, Receive, Scope, Send

server = MCPServer("onward-test", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return str(a + b)


@server.tool()
def pid() -> str:
    """The server process's id (the tests kill it)."""
    return str(os.getpid())


@server.tool()
def divide(a: float, b: float) -> str:
    """Divide a by b."""
    if b == 0:
        raise ToolError("cannot divide by zero")
    return str(a / b)


@server.tool()
async def wait(seconds: float) -> str:
    """Answer after this many seconds, sending nothing meanwhile."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():  # the client said it gave the call up
        if os.environ.get("MCP_TEST_CANCEL_LOG"):
            with open(os.environ["MCP_TEST_CANCEL_LOG"], "a") as cancel_log:
                cancel_log.write(f"wait {seconds:g}\n")
        raise
    return f"waited {seconds:g} s"


@server.tool()
def secret() -> str:
    """The value of MCP_TEST_SECRET in the server's environment."""
    return os.environ.get("MCP_TEST_SECRET", "<unset>")


if os.environ.get("MCP_TEST_BAD_NAME"):

    @server.tool(name="read.file")
    def read_dot_file() -> str:
        """A tool whose name has a dot."""
        return "never offered"


if os.environ.get("MCP_TEST_ALSO"):

    @server.tool(name=os.environ["MCP_TEST_ALSO"])
    def also() -> str:
        """A tool named as the test asks."""
        return "also"


class HttpApp:
    """The server over streamable HTTP at ``/mcp``, refusing requests without ``token``.

    ``legacy``: it answers ``server/discover`` as a server of the session-based
    (pre-2026) protocol does, so clients fall back to the ``initialize``
    handshake and a session id. :meth:`forget_sessions` then answers requests of
    the sessions so far with 404, as such a server does after a restart.
    """

    def __init__(self, token: str, legacy: bool = False) -> None:
        self._app = server.streamable_http_app()
        self._token = f"Bearer {token}".encode()
        self._legacy = legacy
        self._seen: set[bytes] = set()
        self._forgotten: set[bytes] = set()

    def forget_sessions(self) -> None:
        self._forgotten |= self._seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != self._token:
            await _respond(send, 401, b"no token")
            return
        session = headers.get(b"mcp-session-id")
        if session is not None:
            self._seen.add(session)
            if session in self._forgotten:
                gone = {"code": -32600, "message": "Session not found"}
                answer = json.dumps({"jsonrpc": "2.0", "id": None, "error": gone}).encode()
                await _respond(send, 404, answer, b"application/json")
                return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._legacy and scope["method"] == "POST":
            request = json.loads(body or b"{}")
            if isinstance(request, dict) and request.get("method") == "server/discover":
                error = {"code": -32601, "message": "Method not found"}
                refusal = {"jsonrpc": "2.0", "id": request.get("id"), "error": error}
                await _respond(send, 200, json.dumps(refusal).encode(), b"application/json")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)


async def _respond(send: Send, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    headers = [(b"content-type", kind)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("MCP_TEST_PID_FILE"):  # for a test that cannot ask (it is not the client)
        with open(os.environ["MCP_TEST_PID_FILE"], "w") as pid_file:
            pid_file.write(str(os.getpid()))
    time.sleep(float(os.environ.get("MCP_TEST_SLOW_START", "0")))  # as npx fetching a package
    server.run()
