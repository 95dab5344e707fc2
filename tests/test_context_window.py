"""A model's context window: pricing table, describe_worker, compaction limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from onward.activities.tool_calls import ToolActivities
from onward.activities.tools import builtin_registry
from onward.compaction import limit_for_window
from onward.contracts import ModelPrice, WorkerDescriptionRequest
from onward.pricing import PricingTable


def test_the_bundled_table_knows_the_public_windows() -> None:
    table = PricingTable.load()
    assert table.context_window("openai:gpt-4o-mini") == 128_000
    assert table.context_window("anthropic:claude-sonnet-4-0") == 200_000
    assert table.context_window("scripted") is None  # not a real model
    assert table.context_window("ollama:llama3") is None  # a wildcard without a window
    assert table.context_window("nobody:knows") is None


def test_a_pricing_file_without_windows_stays_valid(tmp_path: Path) -> None:
    # Written before windows existed: the entry replaces the bundled one, window and all.
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"openai:gpt-4o-mini": {"input_per_mtok": 1, "output_per_mtok": 2}}))
    table = PricingTable.load(old)
    assert table.price_for("openai:gpt-4o-mini") == ModelPrice(input_per_mtok=1, output_per_mtok=2)
    assert table.context_window("openai:gpt-4o-mini") is None
    assert table.context_window("openai:gpt-4o") == 128_000


def test_a_bad_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="context_window"):
        ModelPrice(input_per_mtok=1, output_per_mtok=1, context_window=0)


def test_a_run_compacts_at_80_percent_of_the_window() -> None:
    limit = limit_for_window(128_000)
    assert limit.max_tokens == 102_400
    assert limit.keep_last_turns == 4  # ContextLimit's default


async def test_describe_worker_reports_the_asked_for_models_window(tmp_path: Path) -> None:
    activities = ToolActivities(
        builtin_registry(), tmp_path, context_windows=PricingTable.load().context_window
    )
    environment = ActivityEnvironment()
    described = await environment.run(
        activities.describe_worker, WorkerDescriptionRequest(model="anthropic:claude-opus-4-0")
    )
    assert described.context_window == 200_000
    unknown = await environment.run(
        activities.describe_worker, WorkerDescriptionRequest(model="scripted")
    )
    assert unknown.context_window is None
    # An older workflow names no model: no window.
    older = await environment.run(activities.describe_worker, WorkerDescriptionRequest())
    assert older.context_window is None
