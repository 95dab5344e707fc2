"""Onward's payload converter: the same JSON as Temporal's Pydantic converter, fewer validators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import temporalio.contrib.pydantic
from pydantic import TypeAdapter, ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from onward.connection import DATA_CONVERTER, OnwardPayloadConverter
from onward.contracts import (
    AgentInput,
    Message,
    ModelRequest,
    ModelResponse,
    StepRecord,
    ToolCall,
    TranscriptRef,
    Usage,
)

VALUES: list[tuple[Any, Any]] = [
    (AgentInput(prompt="hi", model="scripted:demo", tools=["calculator"]), AgentInput),
    (
        [StepRecord(step=1, text="a", started_at=datetime(2026, 12, 3, 14, 0, tzinfo=UTC))],
        list[StepRecord],
    ),
    ("plain text", str),
    ({"a": [1, 2.5, None]}, dict[str, Any]),
    (None, type(None)),
]


@pytest.mark.parametrize(("value", "hint"), VALUES, ids=[str(hint) for _, hint in VALUES])
def test_values_convert_as_with_temporals_pydantic_converter(value: Any, hint: Any) -> None:
    ours = DATA_CONVERTER.payload_converter
    temporal = pydantic_data_converter.payload_converter
    [payload] = ours.to_payloads([value])
    assert payload == temporal.to_payloads([value])[0]  # the same bytes in every history
    assert ours.from_payloads([payload], [hint]) == [value]
    assert temporal.from_payloads([payload], [hint]) == [value]


def test_a_model_call_is_recorded_without_its_defaults() -> None:
    request = ModelRequest(
        model="openai:gpt-4o-mini",
        messages=[],
        step=2,
        transcript=TranscriptRef(
            id="run@1",
            count=3,
            new_messages=[Message(role="tool", content="4", tool_call_id="c1", name="calculator")],
            steps=[StepRecord(step=1, started_at=datetime(2026, 12, 3, 14, 0, tzinfo=UTC))],
        ),
    )
    response = ModelResponse(
        text="adding",
        tool_calls=[ToolCall(id="c1", name="calculator", arguments={"expression": "1+1"})],
        usage=Usage(input_tokens=10, output_tokens=2),
    )
    ours = DATA_CONVERTER.payload_converter
    temporal = pydantic_data_converter.payload_converter
    for value in (request, response):
        [payload] = ours.to_payloads([value])
        full = temporal.to_payloads([value])[0]
        assert len(payload.data) < len(full.data) * 0.75
        assert b"null" not in payload.data and b"false" not in payload.data
        # Read back whole by Onward and by Temporal's own converter alike.
        assert ours.from_payloads([payload], [type(value)]) == [value]
        assert temporal.from_payloads([payload], [type(value)]) == [value]


def test_a_model_is_validated_without_a_new_type_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    def counting(hint: Any, *args: Any, **kwargs: Any) -> TypeAdapter[Any]:
        built.append(hint)
        return TypeAdapter(hint, *args, **kwargs)

    monkeypatch.setattr(temporalio.contrib.pydantic, "TypeAdapter", counting)
    [payload] = DATA_CONVERTER.payload_converter.to_payloads([AgentInput(prompt="hi")])
    for _ in range(3):  # a fresh converter each time, as the SDK makes per workflow run
        converter = OnwardPayloadConverter()
        assert converter.from_payloads([payload], [AgentInput]) == [AgentInput(prompt="hi")]
    assert built == []


def test_other_types_share_one_adapter_across_converters() -> None:
    hint = dict[str, list[int]]
    [payload] = DATA_CONVERTER.payload_converter.to_payloads([{"a": [1]}])

    def adapters_built() -> int:
        json = OnwardPayloadConverter().converters[b"json/plain"]
        return int(json._type_adapter.cache_info().misses)  # type: ignore[attr-defined]

    before = adapters_built()
    for _ in range(3):  # a fresh converter each time, as the SDK makes per workflow run
        assert OnwardPayloadConverter().from_payloads([payload], [hint]) == [{"a": [1]}]
    assert adapters_built() - before == 1


def test_a_bad_model_payload_still_fails_validation() -> None:
    [payload] = DATA_CONVERTER.payload_converter.to_payloads([{"prompt": 3}])
    with pytest.raises(ValidationError, match="prompt"):
        DATA_CONVERTER.payload_converter.from_payloads([payload], [AgentInput])
