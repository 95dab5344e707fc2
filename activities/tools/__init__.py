"""Tools an agent can call, and the registry that describes and schedules them.

The built-ins are pure arithmetic, files confined to the run's workspace, memory
across runs (``remember``/``recall``) and,
when the worker passes its allow-list, ``http_fetch``; a worker offers them to
every run that names no tools of its own. User tools are plain functions
decorated with :func:`tool`, loaded from modules or entry points by
:mod:`onward.activities.tools.loading`. Tools of MCP servers are listed when a
worker starts (:mod:`.mcp_config`, :mod:`.mcp_servers`).
"""

from __future__ import annotations

from onward.activities.tools.calculator import calculator
from onward.activities.tools.context import UncachedResult
from onward.activities.tools.http_fetch import make_http_fetch
from onward.activities.tools.loading import (
    ENTRY_POINT_GROUP,
    ToolLoadError,
    entry_point_tools,
    load_tools,
    register_tools,
)
from onward.activities.tools.mcp_config import (
    McpConfigError,
    McpServerConfig,
    load_mcp_config,
    parse_mcp_config,
)
from onward.activities.tools.memory import recall, remember
from onward.activities.tools.net_guard import AllowList
from onward.activities.tools.registry import Tool, ToolContext, ToolRegistry, tool
from onward.activities.tools.workspace import list_files, read_file, write_file

__all__ = [
    "BUILTIN_TOOLS",
    "ENTRY_POINT_GROUP",
    "AllowList",
    "McpConfigError",
    "McpServerConfig",
    "Tool",
    "ToolContext",
    "ToolLoadError",
    "ToolRegistry",
    "UncachedResult",
    "builtin_registry",
    "entry_point_tools",
    "load_mcp_config",
    "load_tools",
    "make_http_fetch",
    "parse_mcp_config",
    "register_tools",
    "tool",
]

BUILTIN_TOOLS: list[Tool] = [calculator, write_file, read_file, list_files, remember, recall]
"""The tools every worker has, in the order a model sees them; ``http_fetch`` is made per worker."""


def builtin_registry(http_allow: AllowList | None = None) -> ToolRegistry:
    """A fresh registry of the built-ins; register a worker's own tools on it.

    Args:
        http_allow: The worker's ``ONWARD_HTTP_ALLOW``, read at startup. Given
            (even empty), the registry has ``http_fetch`` with that allow-list;
            None leaves the network tool out.
    """
    registry = ToolRegistry.of(BUILTIN_TOOLS)
    if http_allow is not None:
        registry.register(make_http_fetch(http_allow))
    return registry
