"""Cost per task: provider prompt caching, cached-rate pricing, and the tool-result cache.

Prompt caching runs whole agent runs against local servers speaking the
OpenAI and Anthropic protocols (``provider_servers``): what the request
carries, how the cached tokens the answers report are read and priced, and
that budgets and the report use those prices. The tool cache runs a counting
tool through real workers and a real store (a directory, and PostgreSQL).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from postgres_server import postgres_url
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Reply,
    anthropic_message,
    openai_completion,
)
from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from conftest import REPO, RunningWorker, run_onward, running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.activities.telemetry import ActivityTelemetry
from onward.activities.tools import builtin_registry
from onward.activities.tools.net_guard import AllowList
from onward.activities.tools.registry import tool
from onward.connection import DATA_CONVERTER
from onward.contracts import (
    AgentInput,
    AgentStatus,
    Budget,
    ModelPrice,
    ModelRequest,
    ModelResponse,
    ToolOutcome,
    Usage,
)
from onward.encryption import EncryptionCodec, parse_keys
from onward.errors import SettingsError
from onward.pricing import PricingTable, billed_usd, cache_saved_usd
from onward.starter.render import result_lines, status_lines, step_lines
from onward.starter.report import aggregate, report_lines
from onward.starter.timeline import trace_lines
from onward.starter.trace import load_trace
from onward.store import LocalStore, TranscriptStore, open_store
from onward.tool_cache import ToolCache, ToolCacheEntry, cache_key
from onward.workflows import AgentWorkflow
from onward.workflows.progress import progress_card

__all__ = ["postgres_url"]  # the fixture, for the PostgreSQL tool-cache test

KEY = "test-key"
HAIKU = ModelPrice(
    input_per_mtok=0.8, output_per_mtok=4.0, cached_input_per_mtok=0.08, cache_write_per_mtok=1.0
)
"""anthropic:claude-3-5-haiku-latest in onward/pricing.json."""
GPT_4O_MINI = ModelPrice(input_per_mtok=0.15, output_per_mtok=0.6, cached_input_per_mtok=0.075)
"""openai:gpt-4o-mini in onward/pricing.json."""
BREAKPOINT = {"type": "ephemeral"}


# -- pricing (pure) -------------------------------------------------------------------------


def test_cached_and_written_input_are_billed_at_their_own_rates() -> None:
    usage = Usage(
        input_tokens=10_000,
        output_tokens=1_000,
        cached_input_tokens=6_000,
        cache_write_tokens=3_000,
    )
    plain = 10_000 - 6_000 - 3_000
    billed = (plain * 0.8 + 6_000 * 0.08 + 3_000 * 1.0 + 1_000 * 4.0) / 1e6
    assert billed_usd(HAIKU, usage) == pytest.approx(billed)
    full = (10_000 * 0.8 + 1_000 * 4.0) / 1e6
    assert cache_saved_usd(HAIKU, usage) == pytest.approx(full - billed)

    # No cached rate in the price: cached tokens cost the input price, nothing saved.
    bare = ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)
    assert billed_usd(bare, usage) == pytest.approx((10_000 * 1.0 + 1_000 * 2.0) / 1e6)
    assert cache_saved_usd(bare, usage) == pytest.approx(0.0)

    table = PricingTable.load()
    assert table.cache_saved("openai:gpt-4o-mini", Usage(input_tokens=5)) is None
    cached = Usage(input_tokens=2_000_000, cached_input_tokens=1_000_000)
    assert table.cost("openai:gpt-4o-mini", cached) == pytest.approx(0.15 + 0.075)
    assert table.cache_saved("openai:gpt-4o-mini", cached) == pytest.approx(0.075)


def test_bundled_prices_follow_the_providers_cache_ratios() -> None:
    table = PricingTable.load()
    for model in ("openai:gpt-4o", "openai:gpt-4o-mini"):
        price = table.price_for(model)
        assert price is not None and price.cached_input_per_mtok == price.input_per_mtok / 2
    for model in ("openai:gpt-4.1", "openai:gpt-4.1-mini", "openai:gpt-4.1-nano"):
        price = table.price_for(model)
        assert price is not None and price.cached_input_per_mtok == price.input_per_mtok / 4
    for name in ("claude-3-5-haiku-latest", "claude-sonnet-4-0", "claude-opus-4-0"):
        price = table.price_for(f"anthropic:{name}")
        assert price is not None and price.cached_input_per_mtok is not None
        assert price.cached_input_per_mtok == pytest.approx(price.input_per_mtok * 0.1)
        assert price.cache_write_per_mtok == pytest.approx(price.input_per_mtok * 1.25)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (
            {"acme:m": {"input_per_mtok": "cheap", "output_per_mtok": 1}},
            "'acme:m': input_per_mtok: Input should be a valid number",
        ),
        ({"acme:m": {"input_per_mtok": 1}}, "'acme:m': output_per_mtok: Field required"),
        ([{"input_per_mtok": 1}], "not a JSON object of model names to prices"),
    ],
)
def test_a_bad_pricing_file_is_refused_naming_the_model_and_field(
    tmp_path: Path, content: object, named: str
) -> None:
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SettingsError) as refused:
        PricingTable.load(path)
    assert str(refused.value).startswith(f"pricing file {path} (ONWARD_PRICING): ")
    assert named in str(refused.value)


# -- prompt caching against the provider protocols ---------------------------------------------


@asynccontextmanager
async def provider_worker(
    client: Client, tmp_path: Path, names: list[str], environ: Mapping[str, str]
) -> AsyncIterator[RunningWorker]:
    providers = providers_from_env(environ)
    try:
        async with running_worker(client, tmp_path / "ws", names, providers=providers) as worker:
            yield worker
    finally:
        await close_providers(providers)


def _without_breakpoints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_breakpoints(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_breakpoints(v) for v in value]
    return value


def _breakpoints(body: Any) -> int:
    return json.dumps(body).count('"cache_control"')


def _anthropic_cached(
    reply: dict[str, Any], *, fresh: int, written: int, read: int, output: int
) -> dict[str, Any]:
    """A Messages answer whose usage reports cache writes and reads besides fresh input."""
    reply["usage"] = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }
    return reply


async def test_anthropic_requests_carry_breakpoints_and_cached_tokens_are_priced(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            _anthropic_cached(
                anthropic_message("Computing.", [("toolu_1", "calculator", {"expression": "6*7"})]),
                fresh=50,
                written=2_000,
                read=0,
                output=20,
            ),
            _anthropic_cached(
                anthropic_message(None, [("toolu_2", "calculator", {"expression": "42+1"})]),
                fresh=60,
                written=100,
                read=2_000,
                output=10,
            ),
            _anthropic_cached(anthropic_message("43."), fresh=40, written=80, read=2_100, output=5),
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "Compute 6*7, then add 1",
                    "system": "Be exact.",
                    "model": "anthropic:claude-3-5-haiku-latest",
                    "tools": ["calculator", "read_file"],
                }
            )

    assert result.status == "completed", result.reason
    one, two, three = (request.json for request in server.requests)
    # tools, system (now a list of blocks) and the last message are marked ...
    assert one["tools"][-1]["cache_control"] == BREAKPOINT
    assert all("cache_control" not in t for t in one["tools"][:-1])
    assert one["system"] == [{"type": "text", "text": "Be exact.", "cache_control": BREAKPOINT}]
    assert one["messages"][-1]["content"][-1]["cache_control"] == BREAKPOINT
    assert _breakpoints(one) == 3
    # ... and later calls also mark the end of the previous call's prefix: four at most.
    for body in (two, three):
        assert _breakpoints(body) == 4
        assert body["messages"][-1]["content"][-1]["cache_control"] == BREAKPOINT
        assert body["messages"][-3]["content"][-1]["cache_control"] == BREAKPOINT
    # The prefix is stable: each call starts with everything the one before sent.
    for earlier, later in ((one, two), (two, three)):
        bare_earlier, bare_later = _without_breakpoints(earlier), _without_breakpoints(later)
        for key in ("tools", "system", "model"):
            assert bare_later[key] == bare_earlier[key]
        sent = bare_earlier["messages"]
        assert bare_later["messages"][: len(sent)] == sent

    usage = result.usage
    assert usage.input_tokens == (50 + 2_000) + (60 + 100 + 2_000) + (40 + 80 + 2_100)
    assert (usage.cached_input_tokens, usage.cache_write_tokens) == (4_100, 2_180)
    calls = [
        Usage(
            input_tokens=2_050, output_tokens=20, cached_input_tokens=0, cache_write_tokens=2_000
        ),
        Usage(
            input_tokens=2_160, output_tokens=10, cached_input_tokens=2_000, cache_write_tokens=100
        ),
        Usage(
            input_tokens=2_220, output_tokens=5, cached_input_tokens=2_100, cache_write_tokens=80
        ),
    ]
    assert [step.usage for step in result.steps] == calls
    assert usage.cost_usd == pytest.approx(sum(billed_usd(HAIKU, call) for call in calls))
    assert usage.cache_saved_usd == pytest.approx(sum(cache_saved_usd(HAIKU, c) for c in calls))
    assert usage.cache_saved_usd > 0
    lines = result_lines(result)
    assert any(line.startswith("cache:  4100 input tokens cached, 2180 written") for line in lines)
    card = progress_card(
        AgentStatus(state="completed", step=3, usage=usage, budget=Budget(), model="x")
    )
    assert "prompt cache: 4100 input tokens cached, 2180 written · saved \\$0.00" in card


async def test_cache_prompt_false_sends_no_breakpoints(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(anthropic_message("hi"))
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "hi",
                    "system": "Be brief.",
                    "model": "anthropic:claude-3-5-haiku-latest",
                    "settings": {"cache_prompt": False},
                }
            )
    assert result.status == "completed", result.reason
    (sent,) = server.requests
    assert _breakpoints(sent.json) == 0 and sent.json["system"] == "Be brief."


async def test_a_compaction_in_a_run_with_tools_writes_nothing_to_the_cache(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The summary call declares the tools its history used as placeholders, with tools
    off: its prompt starts unlike any other call's, before or after, so a breakpoint
    there only buys a cache write (125% of input) that nothing reads."""
    long_sum = {"expression": "+".join(["1"] * 300)}
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            *(
                anthropic_message("adding", [(f"toolu_{n}", "calculator", long_sum)])
                for n in range(3)
            ),
            anthropic_message("the sums so far were 300 each"),  # the summary
            anthropic_message("300."),
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "Add up",
                    "system": "Be exact.",
                    "model": "anthropic:claude-3-5-haiku-latest",
                    "tools": ["calculator"],
                    "context": {"max_tokens": 400, "keep_last_turns": 1},
                }
            )
    assert result.status == "completed", result.reason
    assert [step.compaction for step in result.steps] == [False, False, False, True, False]
    bodies = [request.json for request in server.requests]
    summary = bodies[3]
    assert summary["tool_choice"] == {"type": "none"}
    assert _breakpoints(summary) == 0 and summary["system"] == "Be exact."
    # The run's own calls keep theirs.
    assert [_breakpoints(body) for body in (*bodies[:3], bodies[4])] == [3, 4, 4, 4]


def _openai_cached(reply: dict[str, Any], cached: int) -> dict[str, Any]:
    reply["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
    return reply


async def test_openai_cached_tokens_price_the_run_and_keep_it_under_its_cost_budget(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """$0.15 per million input, $0.075 cached: after two calls the run has spent $0.225,
    under its $0.25 budget; at the full price ($0.30) the budget would stop the third call."""
    million = 1_000_000
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(
                None, [("call_1", "calculator", {"expression": "1+1"})], usage=(million, 0)
            ),
            _openai_cached(
                openai_completion(
                    None, [("call_2", "calculator", {"expression": "2+2"})], usage=(million, 0)
                ),
                cached=million,
            ),
            _openai_cached(openai_completion("4", usage=(1_000, 10)), cached=0),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start(
                {
                    "prompt": "Count",
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "budget": {"max_cost_usd": 0.25},
                }
            )
            result = await handle.result()
            trace = await load_trace(handle)

    assert result.status == "completed", result.reason
    # Nothing variable (a time, a step number) precedes the conversation: each call's
    # prompt starts with the whole previous one, which is what OpenAI caches by.
    bodies = [request.json for request in server.requests]
    for earlier, later in itertools.pairwise(bodies):
        assert later["tools"] == earlier["tools"]
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]
    assert result.usage.model_calls == 3
    assert result.usage.cached_input_tokens == million
    assert result.usage.cache_write_tokens == 0
    expected = 0.15 + 0.075 + (1_000 * 0.15 + 10 * 0.6) / 1e6
    assert result.usage.cost_usd == pytest.approx(expected)
    assert result.usage.cache_saved_usd == pytest.approx(0.075)
    assert "(1000000 cached)" in step_lines(result.steps[1])[-1]

    # The report prices from the same figures and shows the cached tokens.
    now = datetime.now(UTC)
    report = aggregate([trace], now - timedelta(hours=1), now)
    (model,) = report.models
    assert model.cached_input_tokens == million
    assert model.cache_saved_usd == pytest.approx(0.075)
    assert report.cost_usd == pytest.approx(expected)
    lines = report_lines(report)
    assert "prompt cache saved $0.0750" in lines[0]
    header, row = lines[2], lines[3]
    column = header.index("CACHED")
    assert row[column:].split()[0] == str(million)
    assert any(line.startswith("cache: 1000000 input tokens cached") for line in trace_lines(trace))


async def test_the_report_says_when_cache_writes_cost_more_than_they_saved(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A one-call Anthropic run writes its prompt to the cache (at 125% of the input
    price) and never reads it: the report says what that cost, as the status does."""
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            _anthropic_cached(anthropic_message("hi"), fresh=10, written=2_000, read=0, output=5)
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start(
                {
                    "prompt": "hi",
                    "system": "Be brief.",
                    "model": "anthropic:claude-3-5-haiku-latest",
                }
            )
            result = await handle.result()
            trace = await load_trace(handle)
    assert result.status == "completed", result.reason
    extra = 2_000 * (1.0 - 0.8) / 1e6  # haiku: writes at $1.00, input at $0.80 per million
    assert result.usage.cache_saved_usd == pytest.approx(-extra)
    assert any("saved -$0.000400 (cache writes cost more)" in line for line in result_lines(result))

    now = datetime.now(UTC)
    report = aggregate([trace], now - timedelta(hours=1), now)
    assert (report.cached_input_tokens, report.cache_write_tokens) == (0, 2_000)
    assert report.models[0].cache_write_tokens == 2_000
    assert report.cache_saved_usd == pytest.approx(-extra)
    head = report_lines(report)[0]
    assert head.endswith("· prompt cache saved -$0.000400 (cache writes cost more)"), head


async def test_the_status_shows_what_the_cache_saved(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(_openai_cached(openai_completion("hi", usage=(4_000, 10)), cached=3_072))
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start({"prompt": "hi", "model": "openai:gpt-4o-mini"})
            await handle.result()
            status = await worker_status(handle)
    assert "cache:  3072 input tokens cached, 0 written · saved $0.000230" in status_lines(
        handle.id, status
    )


async def worker_status(handle: WorkflowHandle[Any, Any]) -> AgentStatus:
    status: AgentStatus = await handle.query(AgentWorkflow.status)
    return status


# -- the tool-result cache ----------------------------------------------------------------------


class Lookups:
    """Tools with side effects to count: how many times each really ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

        @tool(cache_ttl_s=600)
        def lookup(query: str) -> str:
            """Look a word up (slowly, in real life).

            Args:
                query: the word.
            """
            self.ran.append(f"lookup:{query}")
            return f"meaning of {query}"

        @tool
        def rate(currency: str) -> str:
            """Today's exchange rate.

            Args:
                currency: ISO code.
            """
            self.ran.append(f"rate:{currency}")
            return f"{currency}=1.1"

        self.registry = builtin_registry()
        self.registry.register(lookup)
        self.registry.register(rate)


def _calls(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in calls]}


def _script(*turns: dict[str, Any]) -> list[dict[str, Any]]:
    return [*turns, {"text": "done"}]


async def _age(store: TranscriptStore, name: str, args: dict[str, Any], tenant: str | None) -> None:
    """Make a kept result an hour older, as if its TTL had passed (the store's own entry)."""
    key = cache_key(name, args, tenant)
    raw = await store.get_cached(key)
    assert raw is not None
    entry = ToolCacheEntry.model_validate_json(raw)
    entry.stored_at -= 3600
    await store.put_cached(key, entry.model_dump_json().encode())


async def test_a_cacheable_tool_runs_once_within_its_ttl_and_again_after_it(
    client: Client,
    address: str,
    tmp_path: Path,
    search_attribute_names: list[str],
    local_store: TranscriptStore,
) -> None:
    tools = Lookups()
    same = ("lookup", {"query": "onward"})
    async with running_worker(
        client,
        tmp_path / "ws",
        search_attribute_names,
        registry=tools.registry,
        store=local_store,
    ) as worker:
        handle = await worker.start(
            {"prompt": "look", "tools": ["lookup"], "script": _script(_calls(same), _calls(same))}
        )
        first = await handle.result()
        cli_env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": worker.task_queue}
        steps = await run_onward("steps", handle.id, env=cli_env)
        assert steps.code == 0, steps.stderr
        assert [line.strip() for line in steps.stdout.splitlines() if "lookup(" in line] == [
            "lookup(onward) -> meaning of onward",
            "lookup(onward) -> meaning of onward (cache hit)",
        ]
        assert first.status == "completed", first.reason
        assert tools.ran == ["lookup:onward"]  # two identical calls, one execution
        hits = [call.cache_hit for step in first.steps for call in step.tool_calls]
        assert hits == [False, True]
        assert [step.tool_calls[0].result for step in first.steps[:2]] == ["meaning of onward"] * 2
        assert "(cache hit)" in step_lines(first.steps[1])[1]
        assert "(cache hit)" not in step_lines(first.steps[0])[1]

        await _age(local_store, *same, tenant=None)
        again = await worker.run(
            {"prompt": "look", "tools": ["lookup"], "script": _script(_calls(same))}
        )
        assert again.status == "completed", again.reason
        assert tools.ran == ["lookup:onward"] * 2  # the TTL had passed: it ran again
        assert again.steps[0].tool_calls[0].cache_hit is False


async def test_another_tenant_does_not_hit_the_cache_and_run_input_ttls_apply(
    client: Client, tmp_path: Path, search_attribute_names: list[str], local_store: TranscriptStore
) -> None:
    tools = Lookups()
    same = ("lookup", {"query": "x"})
    rate = ("rate", {"currency": "EUR"})
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, registry=tools.registry, store=local_store
    ) as worker:
        script = _script(_calls(same, rate), _calls(same, rate))
        for tenant in ("acme", "acme", "globex"):
            handle = await worker.start(
                {
                    "prompt": "look",
                    "tenant": tenant,
                    "tools": ["lookup", "rate"],
                    "cache_tools": {"rate": 60},
                    "script": script,
                },
                workflow_id=f"cache-{tenant}-{uuid.uuid4().hex[:8]}",
            )
            result = await handle.result()
            assert result.status == "completed", result.reason
        trace = await load_trace(handle)

    # acme's first run ran each tool once; its second run and its repeats were hits;
    # globex ran both again.
    assert sorted(tools.ran) == sorted(["lookup:x", "rate:EUR"] * 2)
    hits = [call.cache_hit for step in result.steps for call in step.tool_calls]
    assert hits == [False, False, True, True]
    rows = trace_lines(trace)
    assert sum("(cache hit)" in row for row in rows) == 2

    # A run without cache_tools does not cache `rate` (no TTL of its own).
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, registry=tools.registry, store=local_store
    ) as worker:
        plain = await worker.run(
            {
                "prompt": "rate",
                "tenant": "acme",
                "tools": ["rate"],
                "script": _script(_calls(rate), _calls(rate)),
            }
        )
    assert plain.status == "completed", plain.reason
    assert tools.ran.count("rate:EUR") == 4


async def test_a_kept_result_sealed_with_a_dropped_key_is_a_miss(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Rotating the keys (a new one in front, the old one dropped) leaves entries the
    workers can no longer open, expired ones included: the tool runs, uncached."""
    tools = Lookups()
    same = ("lookup", {"query": "onward"})
    root = tmp_path / "store"
    old, new = (EncryptionCodec(parse_keys(f"{name}:{_key()}")) for name in ("old", "new"))
    await ToolCache(TranscriptStore(LocalStore(root), old)).put(
        *same, None, ToolOutcome(content="kept under the old key")
    )
    config = env.client.config()
    config["data_converter"] = dataclasses.replace(DATA_CONVERTER, payload_codec=new)
    store = TranscriptStore(LocalStore(root), new)
    async with running_worker(
        Client(**config),
        tmp_path / "ws",
        search_attribute_names,
        registry=tools.registry,
        store=store,
    ) as worker:
        first = await worker.run(
            {"prompt": "look", "tools": ["lookup"], "script": _script(_calls(same))}
        )
        second = await worker.run(
            {"prompt": "look", "tools": ["lookup"], "script": _script(_calls(same))}
        )
    assert first.status == "completed", first.reason
    assert first.steps[0].tool_calls[0].result == "meaning of onward"
    assert first.steps[0].tool_calls[0].cache_hit is False
    # The result it ran for replaced the unreadable entry, under the new key.
    assert second.steps[0].tool_calls[0].cache_hit is True
    assert tools.ran == ["lookup:onward"]


async def test_an_http_error_page_is_shown_to_the_model_but_never_kept(
    client: Client, tmp_path: Path, search_attribute_names: list[str], local_store: TranscriptStore
) -> None:
    """The README's own example caches ``http_fetch``: a 503 (or any status from 400)
    is its result, not a tool error, yet must not be reused for the TTL."""
    async with FakeProvider("/rate") as site:
        site.script(
            Reply(503, {"error": "try again"}),
            Reply(200, {"GBP": 0.85}),
        )
        fetch = ("http_fetch", {"url": f"{site.url}/rate", "method": "POST"})
        async with running_worker(
            client,
            tmp_path / "ws",
            search_attribute_names,
            registry=builtin_registry(http_allow=AllowList.parse("127.0.0.1")),
            store=local_store,
        ) as worker:
            result = await worker.run(
                {
                    "prompt": "rate",
                    "tools": ["http_fetch"],
                    "cache_tools": {"http_fetch": 600},
                    "script": _script(_calls(fetch), _calls(fetch), _calls(fetch)),
                }
            )
    assert result.status == "completed", result.reason
    calls = [step.tool_calls[0] for step in result.steps[:3]]
    assert [(call.result or "").split("\n")[0] for call in calls] == [
        "HTTP 503 Service Unavailable",
        "HTTP 200 OK",
        "HTTP 200 OK",
    ]
    assert [call.cache_hit for call in calls] == [False, False, True]
    assert len(site.requests) == 2


async def test_a_workspace_tool_is_cached_per_workspace(
    client: Client, tmp_path: Path, search_attribute_names: list[str], local_store: TranscriptStore
) -> None:
    """A tool that reads its run's workspace (or memory) answers from that run's files:
    another run's identical call, with files of its own, must not get its result."""
    read = ("read_file", {"path": "notes.txt"})
    async with running_worker(
        client, tmp_path / "ws", search_attribute_names, store=local_store
    ) as worker:
        results = []
        for text in ("from run one", "from run two"):
            write = ("write_file", {"path": "notes.txt", "content": text})
            result = await worker.run(
                {
                    "prompt": "note, then read",
                    "tools": ["write_file", "read_file"],
                    "cache_tools": {"read_file": 600},
                    "script": _script(_calls(write), _calls(read), _calls(read)),
                }
            )
            assert result.status == "completed", result.reason
            results.append(result)
    for result, text in zip(results, ("from run one", "from run two"), strict=True):
        first, again = (step.tool_calls[0] for step in result.steps[1:3])
        assert (first.result, first.cache_hit) == (text, False)
        assert (again.result, again.cache_hit) == (text, True)  # within its own run: a hit


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize("backend", ["local", "postgresql"])
async def test_tool_cache_entries_in_each_store_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(tmp_path / "store") if backend == "local" else request.getfixturevalue("postgres_url")
    store = await open_store(url)
    now = [1_000_000.0]
    cache = ToolCache(store, clock=lambda: now[0])
    args = {"b": [1, 2], "a": "ü"}
    name = f"lookup_{uuid.uuid4().hex[:6]}"
    try:
        assert await cache.get(name, args, "t1", 60) is None
        await cache.put(name, args, "t1", ToolOutcome(content="42", call_id="c1", step=3))
        await cache.put(name, {"a": 1}, "t1", ToolOutcome(error="boom"))  # errors are not kept
        reordered = {"a": "ü", "b": [1, 2]}  # the same arguments, canonically
        hit = await cache.get(name, reordered, "t1", 60)
        assert hit == ToolOutcome(content="42", cache_hit=True)
        assert await cache.get(name, args, "t2", 60) is None
        assert await cache.get(name, args, None, 60) is None
        assert await cache.get(name, {"a": 1}, "t1", 60) is None
        now[0] += 59.9
        assert await cache.get(name, args, "t1", 60) is not None
        now[0] += 0.1
        assert await cache.get(name, args, "t1", 60) is None
    finally:
        await store.close()


def test_cache_options_are_checked() -> None:
    with pytest.raises(ValueError, match="cache_ttl_s must be a positive"):

        @tool(cache_ttl_s=0)
        def never(x: int) -> str:
            """Never."""
            return str(x)

    with pytest.raises(ValidationError, match="cache_tools"):
        AgentInput.model_validate({"prompt": "x", "cache_tools": {"rate": -1}})
    with pytest.raises(ValidationError, match="cache_tools: 'rate' not among the run's tools"):
        AgentInput.model_validate({"prompt": "x", "tools": ["lookup"], "cache_tools": {"rate": 60}})


def test_the_readme_cost_inputs_are_valid() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Cost and caching", 1)[1].split("\n### ", 1)[0]
    cached, cleared = (
        AgentInput.model_validate_json(block)
        for block in re.findall(r"```json\n(.*?)```", section, flags=re.S)
    )
    assert cached.cache_tools == {"http_fetch": 600}
    assert cleared.clear_tool_results is not None
    assert cleared.clear_tool_results.clear_at_least_tokens == 4000


def test_chat_spans_carry_the_cached_token_counts() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = ActivityTelemetry(tracer=provider.get_tracer("onward"))
    request = ModelRequest(model="openai:gpt-4o-mini", messages=[], step=1)
    usage = Usage(input_tokens=2_000, output_tokens=5, cached_input_tokens=1_536)
    with telemetry.chat(request) as chat:
        chat.record(ModelResponse(text="hi", usage=usage))
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 2_000
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1_536
    assert "gen_ai.usage.cache_creation.input_tokens" not in attributes
