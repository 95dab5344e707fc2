"""Which MCP servers a worker takes tools from: the ``mcpServers`` file users already have.

``onward worker --mcp-config FILE`` (or ``ONWARD_MCP_CONFIG=FILE``) reads a JSON
file in the shape Claude Desktop, Cursor and pydantic-ai read::

    {"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."]},
        "search": {"url": "http://127.0.0.1:8931/mcp",
                   "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}}}}

A server with ``command`` is started as a process and spoken to over its stdin
and stdout; one with ``url`` over streamable HTTP. ``${VAR}`` and
``${VAR:-default}`` in any string take the worker's environment variable, so a
secret can stay in the environment instead of the file. This module only reads
and checks the file (pure, no ``mcp`` import); :mod:`.mcp_servers` connects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from onward.activities.tools.registry import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S
from onward.errors import SettingsError

__all__ = [
    "MCP_CONFIG_ENV",
    "McpConfigError",
    "McpServerConfig",
    "load_mcp_config",
    "parse_mcp_config",
]

MCP_CONFIG_ENV = "ONWARD_MCP_CONFIG"
"""The environment variable naming the worker's MCP configuration file."""

_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
"""A server's name prefixes its tools' names, which model APIs limit to these characters."""
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STDIO_KEYS = {"command", "args", "env", "cwd"}
_HTTP_KEYS = {"url", "headers"}
_COMMON_KEYS = {"type", "timeout_s", "max_attempts"}
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http"}


class McpConfigError(SettingsError):
    """The MCP configuration file cannot be read or is not valid; the message says where."""


@dataclass(frozen=True)
class McpServerConfig:
    """One MCP server: a command to start (stdio) or a URL (streamable HTTP).

    Args:
        name: The server's name; its tools are offered as ``<name>_<tool>``.
        command: The program to start, for a stdio server.
        args: Its arguments.
        env: Environment variables of the process, over a minimal inherited set
            (``PATH``, ``HOME``, ...): the worker's other variables are not passed on.
        cwd: The process's working directory; default: the worker's.
        url: The endpoint of a streamable HTTP server.
        headers: Headers sent with every request to ``url`` (an API key, say).
        timeout_s: Start-to-close timeout of one call of its tools.
        max_attempts: Attempts of one call, counting the first; a dropped
            connection is retried within them.
    """

    name: str
    command: str | None = None
    # What may hold a secret taken from the environment stays out of repr (see `where`).
    args: tuple[str, ...] = field(default=(), repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if not _SERVER_NAME.match(self.name):
            raise McpConfigError(
                f"MCP server name {self.name!r} must be 1-63 letters, digits, '_' or '-': "
                "it prefixes its tools' names, which model APIs limit so"
            )
        if (self.command is None) == (self.url is None):
            raise McpConfigError(
                f'MCP server {self.name!r} needs either "command" (a stdio server) or '
                '"url" (a streamable HTTP server)'
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            # Not echoed: a ${VAR} in it has been filled in, and may be a key.
            raise McpConfigError(
                f"MCP server {self.name!r}: url does not begin with http:// or https://"
            )
        if not 0 < self.timeout_s < float("inf"):
            raise McpConfigError(f"MCP server {self.name!r}: timeout_s must be positive")
        if self.max_attempts < 1:
            raise McpConfigError(f"MCP server {self.name!r}: max_attempts must be at least 1")

    @property
    def where(self) -> str:
        """The server as a person recognises it, for messages and logs.

        Without what may hold a secret taken from the environment: headers, env,
        arguments, and all of a URL but its scheme, host and port (hosted servers
        put keys in the path too: ``https://mcp.example.com/s/${KEY}/mcp``).
        """
        if self.url is not None:
            parts = urlsplit(self.url)
            url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
            return f"MCP server {self.name!r} ({url})"
        return f"MCP server {self.name!r} ({self.command}{' ...' if self.args else ''})"


def load_mcp_config(path: Path, environ: Mapping[str, str]) -> list[McpServerConfig]:
    """The servers of the configuration file at ``path``, ``${VAR}`` taken from ``environ``.

    Raises:
        McpConfigError: the file cannot be read, is not JSON, or a server in it is not valid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise McpConfigError(f"MCP config {path}: {err.strerror or err}") from None
    try:
        document = json.loads(text)
    except ValueError as err:
        raise McpConfigError(f"MCP config {path}: not valid JSON: {err}") from None
    try:
        return parse_mcp_config(document, environ)
    except McpConfigError as err:
        raise McpConfigError(f"MCP config {path}: {err}") from None


def parse_mcp_config(document: object, environ: Mapping[str, str]) -> list[McpServerConfig]:
    """The servers of a parsed ``{"mcpServers": {...}}`` document, in the file's order.

    Raises:
        McpConfigError: the document or one of its servers is not valid.
    """
    if not isinstance(document, dict) or not isinstance(document.get("mcpServers"), dict):
        raise McpConfigError('expected a JSON object with "mcpServers": {"<name>": {...}}')
    servers = []
    for name, entry in document["mcpServers"].items():
        if not isinstance(entry, dict):
            raise McpConfigError(f"MCP server {name!r}: expected a JSON object")
        servers.append(_server(name, _expand(entry, environ, name)))
    return servers


def _server(name: str, entry: dict[str, Any]) -> McpServerConfig:
    unknown = sorted(set(entry) - _STDIO_KEYS - _HTTP_KEYS - _COMMON_KEYS)
    if unknown:
        known = ", ".join(sorted(_STDIO_KEYS | _HTTP_KEYS | _COMMON_KEYS))
        raise McpConfigError(f"MCP server {name!r}: unknown key {unknown[0]!r} (known: {known})")
    kind = entry.get("type")
    if kind is not None and kind not in _TYPES:
        raise McpConfigError(
            f"MCP server {name!r}: type {kind!r} is not supported (stdio or http; "
            "the older SSE transport is not)"
        )
    transport = _STDIO_KEYS if "command" in entry else _HTTP_KEYS
    stray = sorted(set(entry) & ((_STDIO_KEYS | _HTTP_KEYS) - transport))
    if stray and ("command" in entry or "url" in entry):
        what = "a stdio server (command)" if "command" in entry else "an HTTP server (url)"
        raise McpConfigError(f"MCP server {name!r}: {stray[0]!r} is not a key of {what}")
    max_attempts = entry.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise McpConfigError(f"MCP server {name!r}: 'max_attempts' must be a whole number")
    return McpServerConfig(
        name=name,
        command=_optional_str(entry, "command", name),
        args=tuple(_strings(entry.get("args", []), "args", name)),
        env=_string_map(entry.get("env", {}), "env", name),
        cwd=_optional_str(entry, "cwd", name),
        url=_optional_str(entry, "url", name),
        headers=_string_map(entry.get("headers", {}), "headers", name),
        timeout_s=_number(entry, "timeout_s", name, DEFAULT_TIMEOUT_S),
        max_attempts=max_attempts,
    )


def _expand(value: Any, environ: Mapping[str, str], server: str) -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` replaced in every string."""
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = environ.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise McpConfigError(
                f"MCP server {server!r}: ${{{name}}} is not set in the worker's environment "
                f"(write ${{{name}:-default}} for a default)"
            )

        return _VARIABLE.sub(variable, value)
    if isinstance(value, list):
        return [_expand(item, environ, server) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, environ, server) for key, item in value.items()}
    return value


def _optional_str(entry: dict[str, Any], key: str, server: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise McpConfigError(f"MCP server {server!r}: {key!r} must be a non-empty string")
    return value


def _strings(value: object, key: str, server: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise McpConfigError(f"MCP server {server!r}: {key!r} must be a list of strings")
    return list(value)


def _string_map(value: object, key: str, server: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise McpConfigError(f"MCP server {server!r}: {key!r} must be an object of string values")
    return dict(value)


def _number(entry: dict[str, Any], key: str, server: str, default: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise McpConfigError(f"MCP server {server!r}: {key!r} must be a number")
    return float(value)
