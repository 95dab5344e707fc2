"""The tool registry: typed tools, their JSON schemas and how they are scheduled."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel

from onward.activities.tools.context import ToolContext, ToolFunction
from onward.activities.tools.signature import (
    adapt_function,
    is_async_callable,
    parse_docstring,
    type_hints,
)
from onward.contracts import ToolSpec

__all__ = [
    "RESULT_CAP_CHARS",
    "Tool",
    "ToolContext",
    "ToolFunction",
    "ToolRegistry",
    "is_tool_name",
    "tool",
]

RESULT_CAP_CHARS = 10_000_000
"""The most of one tool result the activity returns, and so the largest
``max_result_chars`` a tool may ask for. A result this large travels through
external storage (``onward.store.payloads``): the history holds a reference. The
model sees up to the tool's own ``max_result_chars`` (the workflow cuts it), the
step log up to its own cap."""

_SPEC_FIELDS = ToolSpec.model_fields
DEFAULT_TIMEOUT_S: float = _SPEC_FIELDS["timeout_s"].default
DEFAULT_MAX_ATTEMPTS: int = _SPEC_FIELDS["max_attempts"].default
DEFAULT_MAX_RESULT_CHARS: int = _SPEC_FIELDS["max_result_chars"].default
"""A tool's scheduling defaults: those of the ``ToolSpec`` contract, written only there."""

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI and Anthropic accept as a function name; anything else fails at the provider."""


def is_tool_name(name: str) -> bool:
    """Whether model APIs accept ``name`` as a tool's name (1-64 letters, digits, ``_``, ``-``)."""
    return _TOOL_NAME.match(name) is not None


@dataclass(frozen=True)
class Tool:
    """A registered tool: a function over one pydantic argument model."""

    name: str
    description: str
    args_model: type[BaseModel]
    fn: ToolFunction
    local: bool = False
    """Fast and pure: run as a local activity (about 8 ms of durable overhead, not 48 ms)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    requires_approval: bool = False
    builtin: bool = False
    cache_ttl_s: float | None = None
    """Reuse the result of an identical call (same arguments and tenant) this many seconds;
    None: not cached (unless a run's ``cache_tools`` names the tool)."""
    uses_workspace: bool = True
    """The function takes a :class:`ToolContext`, so it may touch its run's workspace;
    ``tool()`` sets it. A run whose calls were all of tools without it lists no artifacts
    (one activity less at its end)."""
    parameters: dict[str, Any] | None = field(default=None, compare=False)
    """The JSON schema the model sees, when it is not ``args_model``'s: a tool from an
    MCP server shows the server's schema, and the server checks the arguments."""

    @property
    def module(self) -> str:
        """The module the tool's function was defined in, for error messages."""
        return str(getattr(self.fn, "__module__", None) or "<unknown module>")

    def spec(self) -> ToolSpec:
        """What the worker tells a run about this tool: schema and scheduling options."""
        return self._spec

    @functools.cached_property
    def _spec(self) -> ToolSpec:
        # Built once: pydantic's JSON schema generation took ~1.4 ms a tool, paid by
        # every run's describe_worker (7 ms for the five built-ins).
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=(
                self.parameters
                if self.parameters is not None
                else self.args_model.model_json_schema()
            ),
            local=self.local,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            max_result_chars=self.max_result_chars,
            requires_approval=self.requires_approval,
            uses_workspace=self.uses_workspace,
        )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    local: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    builtin: bool = False,
    cache_ttl_s: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    local: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    builtin: bool = False,
    cache_ttl_s: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function; use as ``@tool()``, ``@tool(...)`` or ``@tool``.

    Two forms, told apart by the first parameter:

    * ``fn(args: SomeModel, ctx: ToolContext)``: the argument model is that
      pydantic model (``ctx`` may be left out).
    * ``fn(city: str, unit: Literal["c", "f"] = "c", ...)``: typed parameters;
      the argument model is generated from them, with descriptions from
      ``Annotated[..., Field(description=...)]`` or the docstring's ``Args:``.
      A parameter annotated ``ToolContext`` receives the call's context.

    Either may be sync (run in a thread) or async. The description is the
    docstring without its ``Args:`` and ``Raises:`` sections, so the schema the
    model sees is generated, never written twice.

    Args:
        fn: The function, when used as a bare ``@tool``.
        name: Tool name shown to the model; default: the function's name.
        local: Fast and pure: run as a local activity.
        timeout_s: Start-to-close timeout of one attempt.
        max_attempts: Attempts, counting the first; ``ToolRetryableError`` retries.
        max_result_chars: The result is cut to this many characters (at most
            :data:`RESULT_CAP_CHARS`).
        requires_approval: A person must approve each call before it runs.
        builtin: Offered to runs that name no tools.
        cache_ttl_s: Seconds an identical call (same arguments, same tenant)
            gets the earlier result instead of running again (see
            :mod:`onward.tool_cache`); only for tools without side effects
            worth repeating.

    Raises:
        TypeError: the function cannot be described to a model.
        ValueError: a bad name or option.
    """
    _check_options(timeout_s=timeout_s, max_attempts=max_attempts, max_chars=max_result_chars)
    if cache_ttl_s is not None and not 0 < cache_ttl_s < float("inf"):
        raise ValueError(f"cache_ttl_s must be a positive number of seconds, not {cache_ttl_s}")

    def wrap(target: Callable[..., Any]) -> Tool:
        tool_name = name or str(getattr(target, "__name__", ""))
        if not _TOOL_NAME.match(tool_name):
            raise ValueError(
                f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-' "
                "(model APIs refuse other names); pass @tool(name=...)"
            )
        doc = parse_docstring(target.__doc__)
        model_form = _model_form(target, tool_name)
        if model_form is not None:
            args_model, call, takes_context = model_form
        else:
            args_model, call = adapt_function(target, tool_name, doc.params)
            takes_context = _has_context_param(target, tool_name)
        return Tool(
            name=tool_name,
            description=doc.description,
            args_model=args_model,
            fn=call,
            local=local,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            max_result_chars=max_result_chars,
            requires_approval=requires_approval,
            builtin=builtin,
            cache_ttl_s=cache_ttl_s,
            uses_workspace=takes_context,
        )

    return wrap if fn is None else wrap(fn)


def _check_options(*, timeout_s: float, max_attempts: int, max_chars: int) -> None:
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if not 1 <= max_chars <= RESULT_CAP_CHARS:
        raise ValueError(
            f"max_result_chars must be between 1 and {RESULT_CAP_CHARS}, not {max_chars}"
        )


def _model_form(
    fn: Callable[..., Any], tool_name: str
) -> tuple[type[BaseModel], ToolFunction, bool] | None:
    """``(model, call, takes_context)`` for ``fn(args: Model[, ctx])``; None for a
    typed-parameter function.

    A function whose only argument is one pydantic model takes that model's
    fields at the top level, which is what a model is shown either way.
    """
    params = list(inspect.signature(fn).parameters.values())
    if not params or len(params) > 2:
        return None
    # The activity calls ``fn(args, ctx)`` positionally; anything else is the typed form.
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(param.kind not in positional for param in params):
        return None
    hints = type_hints(fn, tool_name)
    first = hints.get(params[0].name)
    if not (isinstance(first, type) and issubclass(first, BaseModel)):
        return None
    if len(params) == 1:
        return first, _without_context(fn), False
    second = hints.get(params[1].name, inspect.Parameter.empty)
    if second is not ToolContext and second is not inspect.Parameter.empty:
        return None
    return first, fn, True


def _has_context_param(fn: Callable[..., Any], tool_name: str) -> bool:
    """Whether a typed-parameter function has a parameter that receives the ToolContext."""
    hints = type_hints(fn, tool_name)
    return any(hints.get(name) is ToolContext for name in inspect.signature(fn).parameters)


def _without_context(fn: Callable[..., Any]) -> ToolFunction:
    """Adapt ``fn(args)`` to the activity's ``fn(args, ctx)``, keeping it sync or async."""
    if is_async_callable(fn):

        async def call_async(args: BaseModel, ctx: ToolContext) -> str:
            result = await fn(args)
            return result if isinstance(result, str) else str(result)

        call_async.__module__ = getattr(fn, "__module__", __name__)
        return call_async

    def call_sync(args: BaseModel, ctx: ToolContext) -> Any:
        return fn(args)

    call_sync.__module__ = getattr(fn, "__module__", __name__)
    return call_sync


@dataclass
class ToolRegistry:
    """Tools by name. Built-ins are what a run gets when its input names no tools."""

    _tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolRegistry:
        """A registry holding ``tools``; a repeated name is a ValueError."""
        registry = cls()
        for item in tools:
            registry.register(item)
        return registry

    def register(self, item: Tool) -> None:
        """Add a tool; another tool of the same name is an error that names both modules.

        Raises:
            ValueError: the name is taken, or the tool's JSON schema cannot be generated.
        """
        existing = self._tools.get(item.name)
        if existing is item:
            return  # the same tool again (a module re-exporting it): nothing to do
        if existing is not None:
            if existing.builtin:
                raise ValueError(
                    f"tool {item.name!r} from {item.module} clashes with the built-in tool "
                    f"{item.name!r}; give it another name with @tool(name=...)"
                )
            raise ValueError(
                f"two tools are named {item.name!r}: one from {existing.module}, one from "
                f"{item.module}; rename one with @tool(name=...)"
            )
        try:
            item.spec()  # a schema that cannot be generated would fail every run that names it
        except Exception as err:  # pydantic raises several kinds here
            raise ValueError(
                f"tool {item.name!r} from {item.module}: its JSON schema cannot be generated: {err}"
            ) from err
        self._tools[item.name] = item

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Every tool name, sorted."""
        return sorted(self._tools)

    def builtin_names(self) -> list[str]:
        """Names of the tools a run gets when it names none, sorted."""
        return sorted(name for name, item in self._tools.items() if item.builtin)
