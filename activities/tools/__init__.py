"""Tools an agent can call, and the registry that describes and schedules them.

The built-ins are pure arithmetic and files confined to the worker's workspace;
a worker offers them to every run that names no tools of its own.
"""

from __future__ import annotations

from activities.tools.calculator import calculator
from activities.tools.registry import Tool, ToolContext, ToolRegistry, tool
from activities.tools.workspace import list_files, read_file, write_file

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolContext", "ToolRegistry", "builtin_registry", "tool"]

BUILTIN_TOOLS: list[Tool] = [calculator, write_file, read_file, list_files]
"""The tools every worker has, in the order a model sees them."""


def builtin_registry() -> ToolRegistry:
    """A fresh registry holding :data:`BUILTIN_TOOLS`; register a worker's own tools on it."""
    return ToolRegistry.of(BUILTIN_TOOLS)
