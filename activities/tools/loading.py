"""Finding user tools: in modules named at startup, and in installed packages' entry points.

A tool module is any importable module with :class:`Tool` objects at module
level (functions decorated with ``@tool()``), or a ``TOOLS`` list when it wants
to choose. ``onward worker --tools mypkg.tools`` (or ``ONWARD_TOOLS``) names
modules; ``pkg.module:name`` names one tool or list inside a module.

An installed package offers tools without any flag through an entry point::

    [project.entry-points."onward.tools"]
    weather = "mypkg.tools"              # a module: all its tools
    search = "mypkg.search:search_tool"  # one Tool, or a list of Tools

Every failure is a :class:`ToolLoadError` naming the module or entry point, so
a worker refuses to start instead of running without the tools it was given.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from importlib import metadata
from types import ModuleType

from onward.activities.tools.registry import Tool, ToolRegistry
from onward.errors import OnwardError

__all__ = [
    "ENTRY_POINT_GROUP",
    "ToolLoadError",
    "entry_point_tools",
    "load_tools",
    "register_tools",
]

ENTRY_POINT_GROUP = "onward.tools"
"""Entry point group installed packages list their tools under."""


class ToolLoadError(OnwardError):
    """A tool module or entry point cannot be loaded, or its tools clash with others."""


def load_tools(module_names: Sequence[str]) -> list[Tool]:
    """Import each module (or ``module:attribute``) and collect its tools, in order.

    Raises:
        ToolLoadError: a module is missing, fails to import, or defines no tools.
    """
    found: list[Tool] = []
    for spec in module_names:
        module_name, _, attribute = spec.strip().partition(":")
        if not module_name:
            raise ToolLoadError(f"tool module name is empty ({spec!r})")
        module = _import(module_name)
        if not attribute:
            found.extend(_module_tools(module))
            continue
        if not hasattr(module, attribute):
            raise ToolLoadError(f"tool module {module_name!r} has no attribute {attribute!r}")
        found.extend(_tools_of(getattr(module, attribute), spec.strip()))
    return _unique(found)


def entry_point_tools(group: str = ENTRY_POINT_GROUP) -> list[Tool]:
    """Tools of installed packages' entry points; each loads a module, a Tool or a list.

    Raises:
        ToolLoadError: an entry point fails to load or holds something other than tools.
    """
    found: list[Tool] = []
    for entry in sorted(metadata.entry_points(group=group), key=lambda item: item.name):
        dist = getattr(entry, "dist", None)
        where = f"entry point {entry.name!r} = {entry.value!r} in group {group!r}" + (
            f" (package {dist.name})" if dist is not None else ""
        )
        try:
            loaded = entry.load()
        except Exception as err:
            raise ToolLoadError(f"{where} failed to load: {type(err).__name__}: {err}") from err
        found.extend(_tools_of(loaded, where))
    return _unique(found)


def register_tools(registry: ToolRegistry, tools: Iterable[Tool]) -> None:
    """Register user tools; one that a module merely re-imports is registered once.

    Raises:
        ToolLoadError: two different tools share a name, or one takes a built-in's name.
    """
    for item in tools:
        try:
            registry.register(item)
        except ValueError as err:
            raise ToolLoadError(str(err)) from None


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        # Missing the module itself, or a package above it: a typo or not installed.
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            raise ToolLoadError(
                f"tool module {name!r} not found; is it installed or on PYTHONPATH?"
            ) from err
        raise ToolLoadError(f"tool module {name!r} failed to import: {err}") from err
    except Exception as err:
        raise ToolLoadError(
            f"tool module {name!r} failed to import: {type(err).__name__}: {err}"
        ) from err


def _module_tools(module: ModuleType) -> list[Tool]:
    """The module's ``TOOLS`` list if it has one, else every Tool at module level."""
    declared = getattr(module, "TOOLS", None)
    if declared is not None:
        tools = _tools_of(declared, f"{module.__name__}.TOOLS")
        if not tools:
            raise ToolLoadError(f"tool module {module.__name__!r} has an empty TOOLS list")
        return tools
    tools = [value for value in vars(module).values() if isinstance(value, Tool)]
    if not tools:
        raise ToolLoadError(
            f"tool module {module.__name__!r} defines no tools: decorate functions with "
            "@tool() or list them in TOOLS"
        )
    return tools


def _tools_of(value: object, where: str) -> list[Tool]:
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, ModuleType):
        return _module_tools(value)
    if isinstance(value, list | tuple):
        strays = [repr(item) for item in value if not isinstance(item, Tool)]
        if strays:
            raise ToolLoadError(f"{where} holds things that are not tools: {', '.join(strays)}")
        return [item for item in value if isinstance(item, Tool)]
    raise ToolLoadError(
        f"{where} is a {type(value).__name__}, not a Tool, a list of Tools or a module"
    )


def _unique(tools: Iterable[Tool]) -> list[Tool]:
    """Drop repeats of the same object (a tool a package re-exports), keeping order."""
    return list({id(item): item for item in tools}.values())
