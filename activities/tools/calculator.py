"""The ``calculator`` tool: arithmetic without ``eval``.

The expression is parsed with :mod:`ast` and evaluated by walking a whitelist
of node types, so a model can never reach names, attributes, imports or calls
other than the few math functions below. Every refusal is a :class:`ToolError`
naming what was refused, so the model can rewrite its expression.

Limits keep one call cheap, because the tool runs as a local activity on the
worker: the input length, nesting depth, exponent size and the size of every
intermediate result are bounded before the work is done.

Results are written the way Python writes them: ints as ints (``2**10`` is
``1024``) and floats by their shortest round-trip ``repr`` (``10/4`` is
``2.5``, ``0.1+0.2`` is ``0.30000000000000004``). True division always gives a
float, so ``4/2`` is ``2.0``; ``4//2`` is ``2``. This keeps int and float
visibly apart instead of guessing which one the model meant.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from onward.activities.tools.registry import tool
from onward.errors import ToolError

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_CHARS",
    "MAX_INT_DIGITS",
    "CalculatorArgs",
    "calculator",
    "evaluate",
]

Number = int | float

MAX_EXPRESSION_CHARS = 1000
"""Longer input is refused before parsing."""

MAX_DEPTH = 500
"""Deepest nesting evaluated; keeps the recursive walk far from Python's recursion limit.

A chain like ``1+1+...`` nests one level per operator, so this is half of
:data:`MAX_EXPRESSION_CHARS`: no chain of binary operators that fits is refused."""

MAX_EXPONENT = 1000
"""Largest ``|exponent|`` accepted by ``**``, so ``9**9**9`` is refused, not computed."""

MAX_INT_DIGITS = 4300
"""Largest int result, in digits: Python's own limit for turning an int into text."""

_INT_LIMIT = 10**MAX_INT_DIGITS
_INT_LIMIT_BITS = _INT_LIMIT.bit_length()
_ROUND_DIGITS_LIMIT = 100
"""``round(x, n)`` with a huge ``|n|`` would build ``10**n``; a float has ~17 digits anyway."""


@dataclass(frozen=True)
class _Function:
    fn: Callable[..., Number]
    min_args: int
    max_args: int | None  # None: any number (min, max)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > _ROUND_DIGITS_LIMIT:
        raise ToolError(
            f"calculator: round() takes a whole number of digits up to {_ROUND_DIGITS_LIMIT}"
        )
    return round(x, ndigits)


_FUNCTIONS: dict[str, _Function] = {
    "sqrt": _Function(math.sqrt, 1, 1),
    "abs": _Function(abs, 1, 1),
    "round": _Function(_round, 1, 2),
    # Over the arguments themselves, so min(3) is 3 rather than "int is not iterable".
    "min": _Function(lambda *xs: min(xs), 1, None),
    "max": _Function(lambda *xs: max(xs), 1, None),
    "floor": _Function(math.floor, 1, 1),
    "ceil": _Function(math.ceil, 1, 1),
    "log": _Function(math.log, 1, 2),
    "log10": _Function(math.log10, 1, 1),
    "exp": _Function(math.exp, 1, 1),
    "sin": _Function(math.sin, 1, 1),
    "cos": _Function(math.cos, 1, 1),
    "tan": _Function(math.tan, 1, 1),
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,  # guarded by _check_power first
}

_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}

# Friendly names for what models most often try, so a refusal reads as advice.
_REFUSED_KINDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute lookups",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or operators",
    ast.IfExp: "conditional expressions",
    ast.NamedExpr: "assignments",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "strings",
    ast.Starred: "* unpacking",
}

_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.BitXor: "'^'",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.MatMult: "'@'",
    ast.Invert: "'~'",
    ast.Not: "'not'",
}


class CalculatorArgs(BaseModel):
    """Arguments of :data:`calculator`."""

    expression: str = Field(
        description=(
            "Arithmetic expression, e.g. '(3 + 4) * 2 ** 10 / sqrt(2)'. Supports + - * / // % **, "
            "parentheses, pi, e and sqrt, abs, round, min, max, floor, ceil, log, log10, exp, "
            "sin, cos, tan."
        ),
    )


@tool(local=True, builtin=True, timeout_s=5)
def calculator(args: CalculatorArgs) -> str:
    """Evaluate an arithmetic expression exactly as Python would, without running any code.

    Integers stay exact integers; '/' always gives a decimal (4/2 is 2.0), '//' divides whole.
    """
    return format_number(evaluate(args.expression))


def format_number(value: Number) -> str:
    """Ints as digits, floats by their shortest round-trip form (``2.5``, ``1e+300``)."""
    return str(value) if isinstance(value, int) else repr(value)


def evaluate(expression: str) -> Number:
    """Evaluate ``expression`` over the whitelist.

    Args:
        expression: The arithmetic expression, at most :data:`MAX_EXPRESSION_CHARS` long.

    Returns:
        The value, an int or a finite float.

    Raises:
        ToolError: The expression is too long, malformed, uses something outside the
            whitelist, divides by zero, or its result is too large or undefined.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(
            f"calculator: expression is {len(expression)} characters long "
            f"(limit {MAX_EXPRESSION_CHARS})"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        # ValueError: null bytes; RecursionError/MemoryError: pathological nesting.
        reason = err.msg if isinstance(err, SyntaxError) else type(err).__name__
        raise ToolError(f"calculator: cannot parse {expression!r}: {reason}") from None
    try:
        return _eval(tree.body, 0)
    except ZeroDivisionError:
        raise ToolError("calculator: division by zero") from None
    except OverflowError:
        raise ToolError("calculator: result is too large") from None


def _eval(node: ast.expr, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(f"calculator: expression is nested too deeply (limit {MAX_DEPTH})")
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.Name):
        return _name(node)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call):
        return _call(node, depth)
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        shown = _REFUSED_OPERATORS.get(type(node.op), type(node.op).__name__)
        hint = "; use ** for powers" if isinstance(node.op, ast.BitXor) else ""
        raise ToolError(f"calculator: operator {shown} is not allowed{hint}")
    kind = _REFUSED_KINDS.get(type(node), f"{type(node).__name__} expressions")
    raise ToolError(f"calculator: {kind} like {_snippet(node)} are not allowed")


def _constant(node: ast.Constant) -> Number:
    value = node.value
    # bool is an int subclass; True + True is not arithmetic a model should rely on.
    if type(value) is int:
        return _checked(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise ToolError("calculator: a number is too large for a float (over ~1.8e308)")
        return value
    kind = "strings" if isinstance(value, str | bytes) else f"{type(value).__name__} values"
    raise ToolError(f"calculator: {kind} like {_snippet(node)} are not allowed")


def _name(node: ast.Name) -> Number:
    if node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if node.id in _FUNCTIONS:
        raise ToolError(f"calculator: {node.id} is a function; call it like {node.id}(x)")
    known = ", ".join(sorted(_CONSTANTS))
    raise ToolError(
        f"calculator: names like {node.id!r} are not allowed (known constants: {known})"
    )


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name):
        raise ToolError(f"calculator: calling {_snippet(node.func)} is not allowed")
    name = node.func.id
    function = _FUNCTIONS.get(name)
    if function is None:
        known = ", ".join(sorted(_FUNCTIONS))
        raise ToolError(f"calculator: function {name!r} is not allowed (known: {known})")
    if node.keywords:
        raise ToolError(f"calculator: {name}() takes no keyword arguments")
    count = len(node.args)
    if count < function.min_args or (function.max_args is not None and count > function.max_args):
        raise ToolError(f"calculator: {name}() takes {_arity(function)}, got {count}")
    args = [_eval(arg, depth + 1) for arg in node.args]
    try:
        return _checked(function.fn(*args))
    except ValueError:
        # math raises ValueError for values outside a function's domain: sqrt(-1), log(0).
        shown = ", ".join(format_number(arg) for arg in args)
        raise ToolError(f"calculator: {name}({shown}) is undefined") from None


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse a power before computing it, since computing it is the denial of service."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(
            f"calculator: exponent {format_number(exponent)} is too large (limit {MAX_EXPONENT})"
        )
    # An int result has at least (bits(base) - 1) * exponent bits; refuse if that is already
    # over the limit (2**1000 is fine, (10**4000)**1000 is not).
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and (abs(base).bit_length() - 1) * exponent > _INT_LIMIT_BITS
    ):
        raise ToolError(f"calculator: result has more than {MAX_INT_DIGITS} digits")


def _checked(value: object) -> Number:
    """Every intermediate value passes here, so no step can grow without bound."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= _INT_LIMIT:
            raise ToolError(f"calculator: result has more than {MAX_INT_DIGITS} digits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError("calculator: result is too large")
        return value
    if isinstance(value, complex):
        # (-8) ** 0.5 is complex in Python; the tool promises real numbers.
        raise ToolError("calculator: result is not a real number")
    raise ToolError(f"calculator: unexpected result of type {type(value).__name__}")


def _arity(function: _Function) -> str:
    if function.max_args is None:
        return f"at least {function.min_args} argument{'s' if function.min_args > 1 else ''}"
    if function.min_args == function.max_args:
        return f"{function.min_args} argument{'s' if function.min_args > 1 else ''}"
    return f"{function.min_args} to {function.max_args} arguments"


def _snippet(node: ast.AST, limit: int = 40) -> str:
    text = ast.unparse(node)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
