"""The wire converters: conversation <-> OpenAI / Anthropic, requests and responses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from provider_servers import anthropic_message, openai_completion

from onward.activities.providers.anthropic_messages import (
    DEFAULT_MAX_TOKENS,
    anthropic_payload,
    from_anthropic_messages,
    parse_anthropic_response,
    to_anthropic_messages,
)
from onward.activities.providers.errors import ResponseShapeError
from onward.activities.providers.http_provider import text_of
from onward.activities.providers.openai_chat import (
    from_openai_messages,
    openai_payload,
    parse_arguments,
    parse_openai_response,
    to_openai_messages,
)
from onward.contracts import (
    Message,
    ModelRequest,
    ModelSettings,
    ToolCall,
    ToolSpec,
    Usage,
)

CALC = ToolSpec(
    name="calculator",
    description="Arithmetic.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)

CONVERSATION = [
    Message(role="system", content="Be brief."),
    Message(role="user", content="What is 17*3+4, and what is in notes.txt?"),
    Message(
        role="assistant",
        content="Let me compute and read.",
        tool_calls=[
            ToolCall(id="call_a", name="calculator", arguments={"expression": "17*3+4"}),
            ToolCall(id="call_b", name="read_file", arguments={"path": "notes.txt"}),
        ],
    ),
    Message(role="tool", content="55", tool_call_id="call_a", name="calculator"),
    Message(
        role="tool",
        content="Error: no such file: notes.txt",
        tool_call_id="call_b",
        name="read_file",
        is_error=True,
    ),
    Message(role="user", content="Also, be quick."),
    Message(
        role="assistant",
        content="",
        tool_calls=[ToolCall(id="call_c", name="calculator", arguments={"_raw": "{oops"})],
    ),
    Message(role="tool", content="Error: invalid arguments", tool_call_id="call_c",
            name="calculator", is_error=True),
    Message(role="assistant", content="55; the file is missing."),
    Message(role="user", content="Thanks"),
]  # fmt: skip


def request(**changes: Any) -> ModelRequest:
    fields: dict[str, Any] = {
        "model": "openai:gpt-4o-mini",
        "messages": CONVERSATION,
        "tools": [CALC],
        "step": 3,
    }
    fields.update(changes)
    return ModelRequest(**fields)


# -- OpenAI -------------------------------------------------------------------------


def test_openai_messages_round_trip() -> None:
    wire = to_openai_messages(CONVERSATION)
    assert from_openai_messages(json.loads(json.dumps(wire))) == CONVERSATION


def test_openai_wire_shape_of_tool_calls_and_results() -> None:
    wire = to_openai_messages(CONVERSATION)
    assert wire[0] == {"role": "system", "content": "Be brief."}
    assistant = wire[2]
    assert assistant["content"] == "Let me compute and read."
    assert assistant["tool_calls"][0] == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "17*3+4"}'},
    }
    assert wire[3] == {"role": "tool", "tool_call_id": "call_a", "content": "55"}
    assert wire[4]["content"] == "Error: no such file: notes.txt"
    assert wire[6]["content"] is None  # tool calls without text: null content
    assert wire[6]["tool_calls"][0]["function"]["arguments"] == '{"_raw": "{oops"}'


def test_openai_error_result_without_prefix_gets_one() -> None:
    message = Message(role="tool", content="boom", tool_call_id="x", is_error=True)
    assert to_openai_messages([message])[0]["content"] == "Error: boom"


def test_openai_payload_with_tools_and_settings() -> None:
    settings = ModelSettings(
        temperature=0.2, max_output_tokens=300, stop=["END"], seed=7, parallel_tool_calls=False
    )
    payload = openai_payload(
        request(settings=settings), model="gpt-4o-mini", max_tokens_field="max_completion_tokens"
    )
    assert payload["model"] == "gpt-4o-mini"
    assert payload["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "Arithmetic.",
                "parameters": CALC.parameters,
            },
        }
    ]
    assert payload["parallel_tool_calls"] is False
    assert payload["temperature"] == 0.2
    assert payload["max_completion_tokens"] == 300
    assert "max_tokens" not in payload
    assert (payload["stop"], payload["seed"]) == (["END"], 7)


def test_openai_payload_without_tools_sends_no_tool_fields() -> None:
    settings = ModelSettings(parallel_tool_calls=True, max_output_tokens=50)
    payload = openai_payload(
        request(allow_tools=False, settings=settings), model="m", max_tokens_field="max_tokens"
    )
    assert "tools" not in payload and "tool_choice" not in payload
    assert "parallel_tool_calls" not in payload
    assert payload["max_tokens"] == 50
    assert set(payload) == {"model", "messages", "max_tokens"}


def test_openai_response_with_tool_calls() -> None:
    data = openai_completion(
        "Computing.",
        [("call_1", "calculator", {"expression": "2+2"}), ("call_2", "calculator", "{bad json")],
        usage=(120, 30),
    )
    response = parse_openai_response(data, provider="openai", step=1, fallback_model="x")
    assert response.text == "Computing."
    assert response.tool_calls == [
        ToolCall(id="call_1", name="calculator", arguments={"expression": "2+2"}),
        ToolCall(id="call_2", name="calculator", arguments={"_raw": "{bad json"}),
    ]
    assert response.usage == Usage(input_tokens=120, output_tokens=30)
    assert response.finish_reason == "tool_calls"
    assert response.model == "openai:gpt-4o-mini-2024-07-18"
    assert response.cost_usd is None  # priced by the activity, not the provider


def test_openai_response_fills_missing_ids_usage_and_legacy_reason() -> None:
    data = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [{"function": {"name": "calculator", "arguments": ""}}],
                },
                "finish_reason": "function_call",
            }
        ]
    }
    response = parse_openai_response(data, provider="ollama", step=4, fallback_model="ollama:m")
    assert response.tool_calls == [ToolCall(id="call_4_1", name="calculator", arguments={})]
    assert response.usage == Usage(estimated=True)  # the model activity estimates it
    assert response.finish_reason == "tool_calls"
    assert response.model == "ollama:m"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ({"a": 1}, {"a": 1}),
        ("", {}),
        (None, {}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ('{"a": ', {"_raw": '{"a": '}),
        (5, {"_raw": "5"}),
    ],
)
def test_tool_arguments_never_raise(raw: Any, expected: dict[str, Any]) -> None:
    assert parse_arguments(raw) == expected


@pytest.mark.parametrize(
    "data",
    [{}, {"choices": []}, {"choices": [{"finish_reason": "stop"}]},
     {"choices": [{"message": {"content": 5}}]},
     {"choices": [{"message": {"content": "", "tool_calls": [{"id": "x"}]}}]}],
)  # fmt: skip
def test_openai_unexpected_shapes_are_shape_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ResponseShapeError):
        parse_openai_response(data, provider="openai", step=1, fallback_model="x")


# -- Anthropic ------------------------------------------------------------------------


def test_anthropic_messages_round_trip() -> None:
    system, wire = to_anthropic_messages(CONVERSATION)
    back = from_anthropic_messages(system, json.loads(json.dumps(wire)))
    assert back == CONVERSATION


def test_anthropic_wire_merges_tool_results_and_marks_errors() -> None:
    system, wire = to_anthropic_messages(CONVERSATION)
    assert system == "Be brief."
    assert [item["role"] for item in wire] == ["user", "assistant", "user", "assistant", "user",
                                               "assistant", "user"]  # fmt: skip
    assert wire[1]["content"] == [
        {"type": "text", "text": "Let me compute and read."},
        {"type": "tool_use", "id": "call_a", "name": "calculator",
         "input": {"expression": "17*3+4"}},
        {"type": "tool_use", "id": "call_b", "name": "read_file", "input": {"path": "notes.txt"}},
    ]  # fmt: skip
    # both results and the user's next message share one user turn, results first
    assert wire[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "55"},
        {"type": "tool_result", "tool_use_id": "call_b",
         "content": "Error: no such file: notes.txt", "is_error": True},
        {"type": "text", "text": "Also, be quick."},
    ]  # fmt: skip
    assert wire[3]["content"] == [
        {"type": "tool_use", "id": "call_c", "name": "calculator", "input": {"_raw": "{oops"}}
    ]  # no empty text block


def test_anthropic_several_system_messages_become_blocks() -> None:
    messages = [
        Message(role="system", content="One."),
        Message(role="system", content="Two."),
        Message(role="user", content="Hi"),
    ]
    system, wire = to_anthropic_messages(messages)
    assert system == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    assert from_anthropic_messages(system, wire) == messages


def test_anthropic_payload_defaults_and_settings() -> None:
    payload = anthropic_payload(
        request(model="anthropic:claude-x", settings=ModelSettings(cache_prompt=False)),
        model="claude-x",
    )
    assert payload["max_tokens"] == DEFAULT_MAX_TOKENS
    assert payload["system"] == "Be brief."
    assert payload["tools"] == [
        {"name": "calculator", "description": "Arithmetic.", "input_schema": CALC.parameters}
    ]
    assert "tool_choice" not in payload
    assert "cache_control" not in json.dumps(payload)

    settings = ModelSettings(
        temperature=0.5, max_output_tokens=100, stop=["END"], seed=1, parallel_tool_calls=False
    )
    payload = anthropic_payload(request(settings=settings), model="claude-x")
    assert payload["max_tokens"] == 100
    assert payload["temperature"] == 0.5
    assert payload["stop_sequences"] == ["END"]
    assert payload["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "seed" not in payload


def test_anthropic_payload_without_tools_declares_history_tools_and_forbids_use() -> None:
    payload = anthropic_payload(request(allow_tools=False, tools=[]), model="claude-x")
    assert payload["tool_choice"] == {"type": "none"}
    assert [tool["name"] for tool in payload["tools"]] == ["calculator", "read_file"]

    plain = anthropic_payload(
        request(allow_tools=False, tools=[], messages=[Message(role="user", content="Hi")]),
        model="claude-x",
    )
    assert "tools" not in plain and "tool_choice" not in plain


def test_anthropic_response_with_tool_use() -> None:
    data = anthropic_message(
        "I'll compute.", [("toolu_1", "calculator", {"expression": "2+2"})], usage=(90, 12)
    )
    data["usage"]["cache_read_input_tokens"] = 10
    response = parse_anthropic_response(data, provider="anthropic", fallback_model="x")
    assert response.text == "I'll compute."
    assert response.tool_calls == [
        ToolCall(id="toolu_1", name="calculator", arguments={"expression": "2+2"})
    ]
    assert response.usage == Usage(input_tokens=100, output_tokens=12, cached_input_tokens=10)
    assert response.finish_reason == "tool_calls"
    assert response.model == "anthropic:claude-3-5-haiku-20241022"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
     ("refusal", "content_filter"), ("pause_turn", "pause_turn")],
)  # fmt: skip
def test_anthropic_stop_reasons(stop_reason: str, finish: str) -> None:
    data = anthropic_message("x", stop_reason=stop_reason)
    response = parse_anthropic_response(data, provider="anthropic", fallback_model="x")
    assert response.finish_reason == finish


@pytest.mark.parametrize(
    "data",
    [{}, {"content": "text"}, {"content": [1]},
     {"content": [{"type": "tool_use", "input": {}}]}],
)  # fmt: skip
def test_anthropic_unexpected_shapes_are_shape_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ResponseShapeError):
        parse_anthropic_response(data, provider="anthropic", fallback_model="x")


def test_a_response_becomes_history_that_converts_back_identically() -> None:
    """What a provider answers survives the agent's conversation and goes back unchanged."""
    answer = openai_completion(None, [("call_9", "calculator", {"expression": "1+1"})])
    response = parse_openai_response(answer, provider="openai", step=1, fallback_model="x")
    history = [Message(role="assistant", content=response.text, tool_calls=response.tool_calls)]
    sent = to_openai_messages(history)[0]
    assert sent["tool_calls"] == answer["choices"][0]["message"]["tool_calls"]

    answer = anthropic_message("hm", [("toolu_9", "calculator", {"expression": "1+1"})])
    response = parse_anthropic_response(answer, provider="anthropic", fallback_model="x")
    history = [Message(role="assistant", content=response.text, tool_calls=response.tool_calls)]
    assert to_anthropic_messages(history)[1][0]["content"] == answer["content"]


def test_text_parts_without_string_text_count_as_empty() -> None:
    parts = [{"type": "text", "text": None}, {"type": "text", "text": "a"},
             {"type": "text"}, {"type": "text", "text": 3}]  # fmt: skip
    assert text_of(parts) == "a"
