"""Argument models from plain Python functions: typed parameters plus a docstring.

A user tool may be an ordinary function, sync or async::

    @tool()
    async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
        \"\"\"Current weather for a city.

        Args:
            city: City name, e.g. 'Paris'.
        \"\"\"

Its parameters become the fields of a pydantic model made with
:func:`pydantic.create_model`, so the JSON schema a model sees and the
validation of the model's arguments come from one place. Descriptions come from
``Annotated[..., Field(description=...)]`` first and from the Google-style
``Args:`` section second. A parameter annotated :class:`ToolContext` is not an
argument: the call's context is passed to it instead.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.fields import FieldInfo

from onward.activities.tools.context import ToolContext, ToolFunction

__all__ = ["Docstring", "adapt_function", "is_async_callable", "parse_docstring", "type_hints"]

# The JSON we send back for non-text results (dicts, lists, models, dataclasses).
_ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any)


@dataclass(frozen=True)
class Docstring:
    """A docstring split into what the model reads and per-parameter descriptions."""

    description: str
    params: Mapping[str, str]


def parse_docstring(doc: str | None) -> Docstring:
    """Split a Google-style docstring into a description and ``Args:`` entries.

    Parsed by ``docstring_parser`` (as pydantic-ai uses griffe) rather than by
    hand. The description is the summary and body plus ``Returns:``, which
    tells a model what it gets back; ``Args:`` move into the schema, and
    ``Raises:`` (Python exceptions) is left out. Continuation lines of an
    entry are joined with single spaces. A docstring the parser rejects is
    kept whole as the description.
    """
    text = inspect.cleandoc(doc or "")
    try:
        parsed = docstring_parser.parse(text, style=docstring_parser.DocstringStyle.GOOGLE)
    except docstring_parser.ParseError:
        return Docstring(description=text, params={})
    parts = [parsed.description or ""]
    if parsed.returns is not None and parsed.returns.description:
        parts.append(f"Returns:\n    {_one_line(parsed.returns.description)}")
    params = {
        param.arg_name.lstrip("*"): _one_line(param.description or "") for param in parsed.params
    }
    return Docstring(description="\n\n".join(part for part in parts if part), params=params)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the async __call__ itself is what we test
    )


def type_hints(fn: Callable[..., Any], tool_name: str) -> dict[str, Any]:
    """Resolved annotations (``Annotated`` kept), or a TypeError naming the tool."""
    try:
        return get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as err:
        raise TypeError(
            f"tool {tool_name}: cannot resolve its type hints ({err}); "
            "names used in annotations must exist at module level at runtime "
            "(not only under TYPE_CHECKING, not local to a function)"
        ) from err


def adapt_function(
    fn: Callable[..., Any], tool_name: str, params_doc: Mapping[str, str]
) -> tuple[type[BaseModel], ToolFunction]:
    """The argument model of a typed function, and ``call(args, ctx)`` that calls it.

    Raises:
        TypeError: a parameter has no annotation, or is ``*args``/``**kwargs``.
    """
    hints = type_hints(fn, tool_name)
    fields: dict[str, Any] = {}
    plan: list[_Param] = []
    params = inspect.signature(fn).parameters
    taken = set(params)
    for index, param in enumerate(params.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise TypeError(
                f"tool {tool_name}: {stars}{param.name} cannot be described to a model; "
                "name every parameter"
            )
        positional = param.kind is param.POSITIONAL_ONLY
        annotation = hints.get(param.name, inspect.Parameter.empty)
        if annotation is ToolContext:
            plan.append(_Param(param.name, None, positional))
            continue
        if _mentions_context(annotation):
            raise TypeError(
                f"tool {tool_name}: annotate {param.name!r} as plain ToolContext to receive "
                "the call's context (in a union it would become an argument the model fills)"
            )
        if annotation is inspect.Parameter.empty:
            raise TypeError(
                f"tool {tool_name}: parameter {param.name!r} needs a type annotation "
                "(it becomes the JSON schema the model sees)"
            )
        field_name = _field_name(param.name, index, taken)
        fields[field_name] = _field(param, annotation, params_doc, field_name)
        plan.append(_Param(param.name, field_name, positional))
    model = create_model(
        _model_name(tool_name),
        __config__=ConfigDict(extra="forbid"),
        __module__=getattr(fn, "__module__", __name__),
        **fields,
    )
    return model, _caller(fn, tuple(plan))


@dataclass(frozen=True)
class _Param:
    """How one parameter is filled: from an argument field, or with the context."""

    name: str
    field: str | None
    """Field of the argument model; None: this parameter gets the :class:`ToolContext`."""
    positional: bool


def _field_name(name: str, index: int, taken: set[str]) -> str:
    """A field name pydantic accepts; the parameter name stays the alias the model sees.

    Names such as ``schema``, ``json`` or ``_private`` would shadow BaseModel
    attributes or be ignored as private, so they get another name inside.
    """
    if not name.startswith("_") and not name.startswith("model_") and not hasattr(BaseModel, name):
        return name
    inner = f"arg{index}_{name.lstrip('_')}"
    while inner in taken:
        inner += "_"
    taken.add(inner)
    return inner


def _field(
    param: inspect.Parameter, annotation: Any, params_doc: Mapping[str, str], field_name: str
) -> tuple[Any, Any]:
    """The annotation and default of one field; explicit ``Field`` settings win.

    What we add (a docstring description, an alias) goes into ``Annotated``
    metadata, which pydantic merges under the parameter's own default, so a
    ``Field(description=...)`` the user wrote is never overwritten.
    """
    default = param.default
    value: Any = ... if default is inspect.Parameter.empty else default
    described = (
        isinstance(default, FieldInfo) and bool(default.description)
    ) or _annotated_description(annotation)
    extra: dict[str, Any] = {}
    if not described and param.name in params_doc:
        extra["description"] = params_doc[param.name]
    if field_name != param.name:
        extra["alias"] = param.name
    if extra:
        annotation = Annotated[annotation, Field(**extra)]
    return annotation, value


def _mentions_context(annotation: Any) -> bool:
    return annotation is ToolContext or any(_mentions_context(arg) for arg in get_args(annotation))


def _annotated_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(item, FieldInfo) and item.description for item in get_args(annotation))


def _model_name(tool_name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", tool_name)
    return "".join(part[:1].upper() + part[1:] for part in parts) + "Args"


def _as_text(result: object) -> str:
    """What the model reads: text as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    try:
        return _ANY_JSON.dump_json(result).decode()
    except Exception:  # noqa: BLE001 - not JSON-able: Python's own text is the best we have
        return str(result)


def _caller(fn: Callable[..., Any], plan: tuple[_Param, ...]) -> ToolFunction:
    """``call(args, ctx)`` for the activity; async stays async, sync stays sync.

    The activity awaits an async tool and runs a sync one in a thread, and it
    decides by looking at this function, so it must keep the original's kind.
    """

    def arguments(args: BaseModel, ctx: ToolContext) -> tuple[list[Any], dict[str, Any]]:
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for param in plan:
            value = ctx if param.field is None else getattr(args, param.field)
            if param.positional:
                positional.append(value)
            else:
                keywords[param.name] = value
        return positional, keywords

    async def finish(pending: Awaitable[object]) -> str:
        return _as_text(await pending)

    if is_async_callable(fn):

        async def call_async(args: BaseModel, ctx: ToolContext) -> str:
            positional, keywords = arguments(args, ctx)
            return _as_text(await fn(*positional, **keywords))

        return _named_like(call_async, fn)

    def call_sync(args: BaseModel, ctx: ToolContext) -> str | Awaitable[str]:
        positional, keywords = arguments(args, ctx)
        result = fn(*positional, **keywords)
        return finish(result) if inspect.isawaitable(result) else _as_text(result)

    return _named_like(call_sync, fn)


def _named_like(call: ToolFunction, fn: Callable[..., Any]) -> ToolFunction:
    """Give the adapter the function's name and module, for logs and clash messages.

    Not ``functools.wraps``: its ``__wrapped__`` would make ``inspect`` report
    the user's signature for a function that takes ``(args, ctx)``.
    """
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        value = getattr(fn, attribute, None)
        if value is not None:
            setattr(call, attribute, value)
    return call
