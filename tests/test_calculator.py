"""The calculator tool: results, formatting, refusals and its denial-of-service guards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onward.activities.tools import BUILTIN_TOOLS, ToolContext, builtin_registry
from onward.activities.tools.calculator import MAX_EXPRESSION_CHARS, CalculatorArgs, calculator
from onward.errors import ToolError


def calc(expression: str, tmp_path: Path) -> str:
    """Call the tool the way the activity does: ``fn(args, ctx)``."""
    ctx = ToolContext(idempotency_key="wf/1/c1", call_id="c1", workspace=tmp_path)
    result = calculator.fn(CalculatorArgs(expression=expression), ctx)
    assert isinstance(result, str)
    return result


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 / 4", "2.5"),
        ("4 / 2", "2.0"),  # true division is always a float, as in Python
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("-7 % 3", "2"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("-3 ** 2", "-9"),  # ** binds tighter than unary minus
        ("+5 - -5", "10"),
        ("2 ** 100", "1267650600228229401496703205376"),  # ints stay exact
        ("sqrt(16)", "4.0"),
        ("abs(-3)", "3"),
        ("round(2.567, 2)", "2.57"),
        ("round(2.5)", "2"),
        ("min(3, 1, 2)", "1"),
        ("max(4)", "4"),
        ("floor(2.7)", "2"),
        ("ceil(2.1)", "3"),
        ("log(8, 2)", "3.0"),
        ("log10(1000)", "3.0"),
        ("exp(0)", "1.0"),
        ("sin(0) + cos(0) + tan(0)", "1.0"),
        ("pi", "3.141592653589793"),
        ("e", "2.718281828459045"),
        ("1e300", "1e+300"),
        ("  1 + 1  ", "2"),
    ],
)
def test_evaluates_arithmetic(expression: str, expected: str, tmp_path: Path) -> None:
    assert calc(expression, tmp_path) == expected


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("os", "names like 'os' are not allowed"),
        ("().__class__", "attribute lookups"),
        ("math.sqrt(4)", "calling 'math.sqrt' is not allowed"),
        ("lambda: 1", "lambdas"),
        ("[1, 2][0]", "subscripts"),
        ("1 < 2", "comparisons"),
        ("1 and 2", "and/or"),
        ("'abc'", "strings"),
        ("f'{1}'", "strings"),
        ("1j", "complex"),
        ("True + 1", "bool"),
        ("(x := 1)", "assignments"),
        ("[x for x in (1, 2)]", "comprehensions"),
        ("2 ^ 3", "operator '^' is not allowed; use ** for powers"),
        ("1 << 2", "operator '<<'"),
        ("sqrt", "sqrt is a function"),
        ("pi()", "function 'pi' is not allowed"),
        ("abs(x=1)", "no keyword arguments"),
        ("abs(1, 2)", "abs() takes 1 argument, got 2"),
        ("min()", "min() takes at least 1 argument, got 0"),
        ("1 +", "cannot parse"),
        ("", "cannot parse"),
        ("import os", "cannot parse"),
    ],
)
def test_refuses_what_is_not_arithmetic(expression: str, refused: str, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"^calculator: ") as info:
        calc(expression, tmp_path)
    assert refused in str(info.value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "calculator: division by zero"),
        ("1 // 0", "calculator: division by zero"),
        ("1 % 0", "calculator: division by zero"),
        ("1.5 / 0.0", "calculator: division by zero"),
        ("0 ** -1", "calculator: division by zero"),
        ("sqrt(-1)", "calculator: sqrt(-1) is undefined"),
        ("log(0)", "calculator: log(0) is undefined"),
        ("(-8) ** 0.5", "calculator: result is not a real number"),
    ],
)
def test_reports_undefined_results(expression: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        calc(expression, tmp_path)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "exponent 387420489 is too large"),
        ("2 ** 1001", "exponent 1001 is too large"),
        ("2 ** -1001", "exponent -1001 is too large"),
        ("(9 ** 1000) ** 5", "more than 4300 digits"),
        ("(10 ** 1000) ** 4 * 10 ** 400", "more than 4300 digits"),
        ("10.0 ** 400", "too large"),
        ("1e308 * 10", "result is too large"),
        ("1e999", "too large"),
        ("exp(1000)", "result is too large"),
        ("sqrt((10 ** 1000) ** 4)", "result is too large"),
        ("round(1, -10 ** 9)", "round() takes a whole number of digits"),
        ("-" * 999 + "1", "nested too deeply"),
    ],
)
def test_refuses_work_that_would_not_end(expression: str, message: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError) as info:
        calc(expression, tmp_path)
    assert message in str(info.value)
    assert time.monotonic() - started < 1.0


def test_refuses_long_input(tmp_path: Path) -> None:
    # Nine groups of fifty ones: long, yet shallow enough to evaluate.
    long_sum = "+".join(["(" + "+".join(["1"] * 50) + ")"] * 9)
    assert len(long_sum) <= MAX_EXPRESSION_CHARS
    assert calc(long_sum, tmp_path) == "450"
    too_long = "1" * (MAX_EXPRESSION_CHARS + 1)
    with pytest.raises(ToolError, match=r"1001 characters long \(limit 1000\)"):
        calc(too_long, tmp_path)


def test_long_flat_chains_are_not_nesting(tmp_path: Path) -> None:
    # A chain of additions nests one level per "+"; every chain that fits is evaluated.
    longest = "1" + "+1" * ((MAX_EXPRESSION_CHARS - 1) // 2)
    assert len(longest) <= MAX_EXPRESSION_CHARS
    assert calc(longest, tmp_path) == "500"
    assert calc("+".join(["2"] * 202), tmp_path) == "404"
    assert calc("-(" * 166 + "1" + ")" * 166, tmp_path) == "1"


def test_is_a_fast_local_builtin() -> None:
    assert calculator.local
    assert calculator.builtin
    assert calculator.timeout_s == 5
    assert calculator in BUILTIN_TOOLS
    assert builtin_registry().get("calculator") is calculator
    spec = calculator.spec()
    assert spec.parameters["required"] == ["expression"]
    assert "description" in spec.parameters["properties"]["expression"]
    assert spec.description.startswith("Evaluate an arithmetic expression")
