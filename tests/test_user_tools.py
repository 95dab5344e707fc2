"""User tools: typed functions as tools, loading them from modules and entry points, and a run."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from conftest import running_worker
from examples import mytools
from onward.activities.tool_calls import RESULT_CAP_CHARS, ToolActivities
from onward.activities.tools import (
    BUILTIN_TOOLS,
    Tool,
    ToolContext,
    ToolLoadError,
    ToolRegistry,
    builtin_registry,
    entry_point_tools,
    load_tools,
    make_http_fetch,
    register_tools,
    tool,
)
from onward.activities.tools.signature import parse_docstring
from onward.contracts import ToolOutcome, ToolRequest
from onward.errors import ToolError

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


async def execute(registry: ToolRegistry, name: str, **arguments: Any) -> ToolOutcome:
    """One call through the real ``execute_tool`` activity, as a worker runs it."""
    activities = ToolActivities(registry, Path("/tmp/onward-test-workspace"))
    request = ToolRequest(name=name, arguments=arguments, call_id="c1", idempotency_key="wf-1/1/c1")
    return await ActivityEnvironment().run(activities.execute_tool, request)


def write_module(directory: Path, source: str) -> str:
    """A uniquely named module in ``directory`` (already on sys.path); returns its name."""
    name = f"usertools_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------------------
# Schemas from typed functions
# ---------------------------------------------------------------------------


@tool(timeout_s=12, max_attempts=4, requires_approval=True, max_result_chars=500)
async def search_docs(
    query: Annotated[str, Field(min_length=1, description="Words to look for.")],
    limit: int = 5,
    kind: Literal["guide", "api"] = "guide",
    tags: list[str] | None = None,
) -> str:
    """Search the documentation.

    Results are ranked by relevance.

    Args:
        query: Ignored, because Annotated already describes it.
        limit (int): How many results to return,
            at most 20.
        kind: Which part of the docs.

    Raises:
        ValueError: never, in this test.
    """
    return f"{query}/{limit}/{kind}/{tags}"


def test_schema_is_generated_from_the_signature() -> None:
    spec = search_docs.spec()
    assert spec.description == "Search the documentation.\n\nResults are ranked by relevance."
    schema = spec.parameters
    assert schema["required"] == ["query"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["query"]["type"] == "string"
    assert props["query"]["minLength"] == 1
    assert props["query"]["description"] == "Words to look for."
    assert props["limit"] == {
        "type": "integer",
        "default": 5,
        "title": "Limit",
        "description": "How many results to return, at most 20.",
    }
    assert props["kind"]["enum"] == ["guide", "api"]
    assert props["kind"]["default"] == "guide"
    assert props["kind"]["description"] == "Which part of the docs."
    assert props["tags"]["anyOf"] == [
        {"items": {"type": "string"}, "type": "array"},
        {"type": "null"},
    ]
    assert "description" not in props["tags"]


def test_per_tool_options_reach_the_spec() -> None:
    spec = search_docs.spec()
    assert (spec.timeout_s, spec.max_attempts, spec.requires_approval) == (12, 4, True)
    assert (spec.max_result_chars, spec.local) == (500, False)
    assert search_docs.name == "search_docs"
    assert search_docs.module == __name__


def test_field_default_and_names_that_shadow_pydantic() -> None:
    @tool(name="shadowing")
    def fn(schema: str, json: int = Field(default=2, ge=0, description="A count.")) -> str:
        """Names pydantic would otherwise refuse.

        Args:
            schema: Which schema.
            json: Not used: the Field's own description wins.
        """
        return f"{schema}:{json}"

    props = fn.spec().parameters["properties"]
    assert list(props) == ["schema", "json"]
    assert props["schema"]["description"] == "Which schema."
    assert props["json"]["description"] == "A count."
    assert props["json"]["minimum"] == 0
    args = fn.args_model.model_validate({"schema": "s1", "json": 7})
    ctx = ToolContext(idempotency_key="k", call_id="c", workspace=Path())
    assert fn.fn(args, ctx) == "s1:7"


def test_parse_docstring_sections() -> None:
    doc = parse_docstring(
        """Summary line.

        Body text.

        Args:
            a (int): First
                and more.
            *rest: Ignored extra.
            b: Second.

        Returns:
            Something.

        Raises:
            KeyError: when missing.
        """
    )
    assert doc.description == "Summary line.\n\nBody text.\n\nReturns:\n    Something."
    assert doc.params == {"a": "First and more.", "rest": "Ignored extra.", "b": "Second."}
    assert parse_docstring(None).description == ""


# ---------------------------------------------------------------------------
# Calling: sync, async, context, results, errors
# ---------------------------------------------------------------------------


async def test_async_and_sync_functions_and_context_injection() -> None:
    seen: dict[str, Any] = {}

    @tool()
    async def shout(text: str, times: int = 1) -> str:
        """Upper-case text."""
        await asyncio.sleep(0)
        return " ".join([text.upper()] * times)

    @tool()
    def whoami(greeting: str, ctx: ToolContext, /, punctuation: str = "!") -> dict[str, str]:
        """Uses the context; returns JSON."""
        seen["thread"] = threading.current_thread()
        return {"greeting": greeting + punctuation, "call": ctx.call_id, "key": ctx.idempotency_key}

    assert "ctx" not in whoami.spec().parameters["properties"]
    assert whoami.spec().parameters["required"] == ["greeting"]

    registry = ToolRegistry.of([shout, whoami])
    assert await execute(registry, "shout", text="hi", times=2) == ToolOutcome(
        content="HI HI", call_id="c1"
    )
    outcome = await execute(registry, "whoami", greeting="hello")
    assert outcome == ToolOutcome(
        content='{"greeting":"hello!","call":"c1","key":"wf-1/1/c1"}', call_id="c1"
    )
    # A sync tool runs in a thread, so a slow one cannot stall the worker's event loop.
    assert seen["thread"] is not threading.current_thread()


class Pair(BaseModel):
    """Module level: annotations are resolved in the module's namespace."""

    a: int
    b: int


async def test_pydantic_model_form_still_works_with_and_without_context() -> None:
    @tool()
    def add(args: Pair, ctx: ToolContext) -> str:
        """Add two numbers."""
        return str(args.a + args.b)

    @tool
    async def multiply(args: Pair) -> str:
        """Multiply two numbers."""
        return str(args.a * args.b)

    assert add.args_model is Pair and multiply.args_model is Pair
    assert multiply.description == "Multiply two numbers."
    registry = ToolRegistry.of([add, multiply])
    assert (await execute(registry, "add", a=2, b=3)).content == "5"
    assert (await execute(registry, "multiply", a=2, b=3)).content == "6"


def test_a_tool_uses_the_workspace_only_when_it_takes_a_context() -> None:
    # A function without a ToolContext cannot know its run's workspace: a run whose
    # calls are all of such tools lists no artifacts (ToolSpec.uses_workspace).
    @tool
    def plain(args: Pair) -> str:
        """Model form, no context."""
        return ""

    @tool
    def with_ctx(args: Pair, ctx: ToolContext) -> str:
        """Model form with the context."""
        return ""

    @tool
    def unannotated_ctx(args: Pair, ctx) -> str:  # type: ignore[no-untyped-def]
        """Model form, the context unannotated."""
        return ""

    @tool
    def typed(city: str) -> str:
        """Typed form, no context."""
        return city

    @tool
    def typed_ctx(city: str, ctx: ToolContext) -> str:
        """Typed form with the context."""
        return city

    uses = {item.name: item.spec().uses_workspace for item in (plain, with_ctx, unannotated_ctx)}
    uses |= {item.name: item.spec().uses_workspace for item in (typed, typed_ctx)}
    assert uses == {
        "plain": False,
        "with_ctx": True,
        "unannotated_ctx": True,
        "typed": False,
        "typed_ctx": True,
    }
    builtins = {item.name: item.spec().uses_workspace for item in BUILTIN_TOOLS}
    builtins["http_fetch"] = make_http_fetch().spec().uses_workspace
    assert builtins == {
        "calculator": False,
        "http_fetch": False,
        "write_file": True,
        "read_file": True,
        "list_files": True,
        "remember": True,
        "recall": True,
    }


async def test_keyword_only_parameters_make_the_typed_form() -> None:
    # The activity passes (args, ctx) positionally; a keyword-only one would fail every call.
    @tool()
    def add(args: Pair, *, ctx: ToolContext) -> str:
        """Add two numbers."""
        return f"{args.a + args.b} for {ctx.call_id}"

    @tool()
    def negate(*, args: Pair) -> str:
        """Negate both numbers."""
        return f"{-args.a} {-args.b}"

    assert add.spec().parameters["required"] == ["args"]
    registry = ToolRegistry.of([add, negate])
    outcome = await execute(registry, "add", args={"a": 2, "b": 3})
    assert outcome == ToolOutcome(content="5 for c1", call_id="c1")
    assert await execute(registry, "negate", args={"a": 2, "b": 3}) == ToolOutcome(
        content="-2 -3", call_id="c1"
    )


async def test_results_are_capped_for_the_history_whatever_the_tool_asks() -> None:
    refused = rf"max_result_chars must be between 1 and {RESULT_CAP_CHARS}, not "
    with pytest.raises(ValueError, match=refused):
        tool(max_result_chars=RESULT_CAP_CHARS + 1)

    @tool(max_result_chars=RESULT_CAP_CHARS)
    def big() -> str:
        """Returns a lot."""
        return "x" * 3 * RESULT_CAP_CHARS

    # Even a Tool built by hand, past the decorator's check, is cut at the cap.
    huge = dataclasses.replace(big, name="huge", max_result_chars=5_000_000)
    for name in ("big", "huge"):
        outcome = await execute(ToolRegistry.of([big, huge]), name)
        assert outcome.truncated
        assert outcome.content.startswith("x" * RESULT_CAP_CHARS + "\n[truncated")


async def test_bad_arguments_and_failures_come_back_as_errors() -> None:
    @tool()
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    @tool()
    async def refuse(reason: str) -> str:
        """Always refuses."""
        raise ToolError(f"refused: {reason}")

    registry = ToolRegistry.of([divide, refuse])
    assert await execute(registry, "divide", a=1, b=4) == ToolOutcome(content="0.25", call_id="c1")
    missing = await execute(registry, "divide", a=1)
    assert missing.error == "invalid arguments for divide: b: Field required"
    wrong = await execute(registry, "divide", a="one", b=2, c=3)
    assert wrong.error is not None
    assert wrong.error.startswith("invalid arguments for divide: a: Input should be a valid number")
    assert "c: Extra inputs are not permitted" in wrong.error
    crash = await execute(registry, "divide", a=1, b=0)
    assert crash.error == "ZeroDivisionError: float division by zero"
    assert await execute(registry, "refuse", reason="no") == ToolOutcome(
        error="refused: no", call_id="c1"
    )


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(city) -> str:  # type: ignore[no-untyped-def]
        return str(city)

    with pytest.raises(TypeError, match=r"parameter 'city' needs a type annotation"):
        tool()(untyped)

    def variadic(*names: str) -> str:
        return ",".join(names)

    with pytest.raises(TypeError, match=r"\*names cannot be described"):
        tool()(variadic)

    def maybe_context(ctx: ToolContext | None = None) -> str:
        return str(ctx)

    with pytest.raises(TypeError, match=r"annotate 'ctx' as plain ToolContext"):
        tool()(maybe_context)

    with pytest.raises(ValueError, match=r"tool name 'has space' must be 1-64 letters"):
        tool(name="has space")(variadic)

    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        tool(max_attempts=0)

    with pytest.raises(ValueError, match="timeout_s must be positive"):
        tool(timeout_s=0)


def test_unresolvable_annotations_name_the_tool(module_dir: Path) -> None:
    name = write_module(
        module_dir,
        """
        from __future__ import annotations
        from typing import TYPE_CHECKING
        from onward.activities.tools import tool
        if TYPE_CHECKING:
            from decimal import Decimal

        def price(amount: Decimal) -> str:
            return str(amount)
        """,
    )
    module = __import__(name)
    with pytest.raises(TypeError, match=r"tool price: cannot resolve its type hints .*Decimal"):
        tool()(module.price)


# ---------------------------------------------------------------------------
# Loading modules and entry points
# ---------------------------------------------------------------------------


def test_load_the_example_module() -> None:
    tools = load_tools(["examples.mytools"])
    assert [item.name for item in tools] == ["get_weather", "convert_units"]
    assert tools == [mytools.get_weather, mytools.convert_units]
    assert mytools.convert_units.local
    assert not mytools.get_weather.builtin


def test_load_missing_and_empty_modules(module_dir: Path) -> None:
    with pytest.raises(ToolLoadError, match=r"^tool module 'nope_no_such\.tools' not found; is"):
        load_tools(["nope_no_such.tools"])

    empty = write_module(module_dir, "def helper() -> int:\n    return 1\n")
    with pytest.raises(ToolLoadError, match=rf"^tool module '{empty}' defines no tools: decorate"):
        load_tools([empty])

    broken = write_module(module_dir, "raise RuntimeError('boom at import')\n")
    with pytest.raises(
        ToolLoadError, match=rf"^tool module '{broken}' failed to import: RuntimeError: boom"
    ):
        load_tools([broken])

    needs = write_module(module_dir, "import nope_missing_dependency\n")
    with pytest.raises(
        ToolLoadError, match=rf"^tool module '{needs}' failed to import: No module named"
    ):
        load_tools([needs])

    with pytest.raises(ToolLoadError, match=r"has no attribute 'missing'"):
        load_tools(["examples.mytools:missing"])


def test_tools_list_and_single_attribute(module_dir: Path) -> None:
    name = write_module(
        module_dir,
        """
        from onward.activities.tools import tool
        from examples.mytools import get_weather

        @tool()
        def first(x: int) -> int:
            \"\"\"One.\"\"\"
            return x

        @tool()
        def second(x: int) -> int:
            \"\"\"Two.\"\"\"
            return x

        TOOLS = [second]
        VALUE = 3
        """,
    )
    assert [item.name for item in load_tools([name])] == ["second"]
    assert [item.name for item in load_tools([f"{name}:first"])] == ["first"]
    with pytest.raises(ToolLoadError, match=rf"^{name}:VALUE is a int, not a Tool"):
        load_tools([f"{name}:VALUE"])


def test_clashes_are_clear(module_dir: Path) -> None:
    clash = write_module(
        module_dir,
        """
        from onward.activities.tools import tool

        @tool()
        def calculator(expression: str) -> str:
            \"\"\"A calculator of our own.\"\"\"
            return expression
        """,
    )
    registry = builtin_registry()
    with pytest.raises(
        ToolLoadError,
        match=rf"^tool 'calculator' from {clash} clashes with the built-in tool 'calculator'",
    ):
        register_tools(registry, load_tools([clash]))

    again = write_module(
        module_dir,
        """
        from onward.activities.tools import tool

        @tool()
        async def get_weather(city: str) -> str:
            \"\"\"Another weather.\"\"\"
            return city
        """,
    )
    registry = builtin_registry()
    with pytest.raises(ToolLoadError, match=r"two tools are named 'get_weather': one from ex"):
        register_tools(registry, load_tools(["examples.mytools", again]))

    # The same object reached twice (a package re-exporting it) is one tool.
    registry = builtin_registry()
    register_tools(registry, [*load_tools(["examples.mytools"]), mytools.get_weather])
    assert registry.get("get_weather") is mytools.get_weather
    assert "get_weather" not in registry.builtin_names()


def test_entry_points_of_installed_packages(module_dir: Path) -> None:
    single = write_module(
        module_dir,
        """
        from onward.activities.tools import tool

        @tool()
        def ping() -> str:
            \"\"\"Answers pong.\"\"\"
            return "pong"
        """,
    )
    group = f"onward.tools.test{uuid.uuid4().hex[:6]}"
    dist = module_dir / "onward_demo_tools-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onward-demo-tools\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        f"[{group}]\nweather = examples.mytools\nping = {single}:ping\n", encoding="utf-8"
    )
    found = entry_point_tools(group)
    assert [item.name for item in found] == ["ping", "get_weather", "convert_units"]

    (dist / "entry_points.txt").write_text(
        f"[{group}]\nbad = nope_not_there.tools\n", encoding="utf-8"
    )
    sys.modules.pop("nope_not_there", None)
    with pytest.raises(
        ToolLoadError,
        match=rf"^entry point 'bad' = 'nope_not_there.tools' in group '{group}' "
        r"\(package onward-demo-tools\) failed to load: ModuleNotFoundError",
    ):
        entry_point_tools(group)
    assert entry_point_tools(f"{group}.unused") == []


# ---------------------------------------------------------------------------
# End to end on the dev server
# ---------------------------------------------------------------------------


async def test_user_tools_in_an_agent_run(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    registry = builtin_registry()
    register_tools(registry, load_tools(["examples.mytools"]))
    script = [
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "oslo", "unit": "f"}},
                {
                    "name": "convert_units",
                    "arguments": {"value": 10, "from_unit": "km", "to_unit": "mi"},
                },
            ]
        },
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris", "unit": "kelvin"}},
                {"name": "get_weather", "arguments": {"town": "Oslo"}},
                {"name": "get_weather", "arguments": {"city": "Atlantis"}},
            ]
        },
        {"text": "done"},
    ]
    async with running_worker(
        client, tmp_path / "workspace", search_attribute_names, registry=registry
    ) as worker:
        result = await worker.run(
            {"prompt": "weather", "tools": ["get_weather", "convert_units"], "script": script}
        )

    assert result.status == "completed"
    assert result.output == "done"
    first, second, last = result.steps
    assert [(call.result, call.error) for call in first.tool_calls] == [
        ("Paris: 18 °C, clear sky", None),
        ("Oslo: 39.2 °F, clear sky", None),
        ("6.214 mi", None),
    ]
    assert [call.error for call in second.tool_calls] == [
        "invalid arguments for get_weather: unit: Input should be 'c' or 'f'",
        "invalid arguments for get_weather: city: Field required; "
        "town: Extra inputs are not permitted",
        "no weather for 'Atlantis'; this example knows Cairo, Oslo, Paris",
    ]
    assert last.tool_calls == []
    assert result.usage.tool_calls == 6


async def test_an_uncached_result_is_imported_where_the_readme_says() -> None:
    import onward.activities.tools as tools

    assert set(tools.__all__) <= set(vars(tools))  # every exported name is there

    @tool
    def outage() -> str:
        """A page that must not be reused."""
        return tools.UncachedResult("503: try later")

    assert (await execute(ToolRegistry.of([outage]), "outage")).content == "503: try later"


class _Opaque:
    """A type pydantic cannot describe in JSON schema."""


def test_a_tool_whose_schema_cannot_be_generated_is_refused_at_registration() -> None:
    class OpaqueArgs(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: _Opaque

    def opaque(args: OpaqueArgs, ctx: ToolContext) -> str:
        """Takes something odd."""
        return "never"

    bad = Tool(name="opaque", description="odd", args_model=OpaqueArgs, fn=opaque)
    with pytest.raises(ValueError, match="its JSON schema cannot be generated"):
        ToolRegistry().register(bad)
