"""A small MCP server for the tests, on the SDK's MCPServer (FastMCP's name in mcp 2).

``python tests/mcp_server.py`` serves it on stdin/stdout; :func:`http_app` is the
same server as a streamable HTTP app (the tests run it with uvicorn on loopback).
``MCP_TEST_BAD_NAME=1`` adds a tool whose name no model API takes.
"""

from __future__ import annotations

import logging
import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

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
def secret() -> str:
    """The value of MCP_TEST_SECRET in the server's environment."""
    return os.environ.get("MCP_TEST_SECRET", "<unset>")


if os.environ.get("MCP_TEST_BAD_NAME"):

    @server.tool(name="read.file")
    def read_dot_file() -> str:
        """A tool whose name has a dot."""
        return "never offered"


def http_app(token: str) -> ASGIApp:
    """The server over streamable HTTP at ``/mcp``, refusing requests without ``token``."""
    app = server.streamable_http_app()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"no token"})
                return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("MCP_TEST_PID_FILE"):  # for a test that cannot ask (it is not the client)
        with open(os.environ["MCP_TEST_PID_FILE"], "w") as pid_file:
            pid_file.write(str(os.getpid()))
    server.run()
