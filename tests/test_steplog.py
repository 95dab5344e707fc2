"""The step log's rules (onward.steplog) and text cutting (onward.text): no server needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onward import steplog
from onward.contracts import (
    Message,
    ModelRequest,
    ModelResponse,
    StepRecord,
    ToolCall,
    ToolCallRecord,
    ToolCallStatus,
    ToolOutcome,
    ToolRequest,
)
from onward.text import clip, shorten

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(**fields: object) -> ToolCallRecord:
    return ToolCallRecord.model_validate({"id": "c1", "name": "calculator", **fields})


def test_outcomes_are_recorded_with_a_status() -> None:
    ok, failed, cut = record(), record(), record()
    steplog.apply_outcome(ok, ToolOutcome(content="4"))
    steplog.apply_outcome(failed, ToolOutcome(error="division by zero"))
    steplog.apply_outcome(cut, ToolOutcome(content="x" * (steplog.RESULT_CHARS + 5)))
    assert (ok.status, ok.result, ok.error) == ("ok", "4", None)
    assert (failed.status, failed.result, failed.error) == ("error", None, "division by zero")
    assert cut.result == "x" * steplog.RESULT_CHARS + "… [5 more characters]"


@pytest.mark.parametrize(
    ("outcome", "status", "error"),
    [
        (steplog.not_run("max_tokens: used 3 of 2 tokens"), "not_run", "not run: max_tokens"),
        (steplog.interrupted("cancelled by signal"), "interrupted", "interrupted: cancelled"),
        (steplog.refused("unknown tool 'nope' (available: wait)"), "refused", "unknown tool"),
    ],
)
def test_legacy_records_read_the_same_status_as_typed_ones(
    outcome: ToolOutcome, status: ToolCallStatus, error: str
) -> None:
    typed = record()
    steplog.apply_outcome(typed, outcome, status)
    legacy = record(error=typed.error)  # as recorded before ToolCallRecord.status existed
    assert typed.error is not None and typed.error.startswith(error)
    assert steplog.tool_status(typed) == steplog.tool_status(legacy) == status


def test_status_of_legacy_results_and_running_calls() -> None:
    assert steplog.tool_status(record(result="55")) == "ok"
    assert steplog.tool_status(record(error="tool call failed: boom")) == "error"
    assert steplog.tool_status(record(error="x requires approval, which ...")) == "refused"
    assert steplog.tool_status(record()) is None  # still running


def test_step_error_is_typed_and_reads_legacy_text() -> None:
    typed = StepRecord(step=1, started_at=NOW, error="rate limited")
    legacy = StepRecord(step=1, started_at=NOW, text="model call failed: rate limited")
    answer = StepRecord(step=1, started_at=NOW, text="model call failed: is what I'd say")
    answer.tool_calls.append(record(result="1"))
    assert steplog.step_error(typed) == steplog.step_error(legacy) == "rate limited"
    assert steplog.step_error(answer) is None  # a step with tool calls had an answer
    assert steplog.step_error(StepRecord(step=2, started_at=NOW, text="done")) is None


def test_request_step_is_typed_or_read_from_a_legacy_key() -> None:
    key = steplog.idempotency_key("wf/with/slashes", "run-1", 7, "call_7_1")
    typed = ToolRequest(name="calculator", call_id="call_7_1", idempotency_key=key, step=7)
    legacy = ToolRequest(name="calculator", call_id="call_7_1", idempotency_key=key)
    foreign = ToolRequest(name="calculator", call_id="c", idempotency_key="no-step-here")
    assert steplog.request_step(typed) == steplog.request_step(legacy) == 7
    assert steplog.request_step(foreign) is None
    assert steplog.tool_call_id(3, 2) == "call_3_2"


def test_legacy_limit() -> None:
    assert steplog.legacy_limit("max_tool_calls: made 2 of 2 tool calls") == "max_tool_calls"
    assert steplog.legacy_limit("cancelled by signal") is None
    assert steplog.legacy_limit(None) is None


def _request(messages: list[Message], allow_tools: bool = True) -> ModelRequest:
    return ModelRequest(model="scripted", messages=messages, step=1, allow_tools=allow_tools)


def test_steering_is_what_a_request_added_beyond_the_run_s_own_prompts() -> None:
    system, prompt = Message(role="system", content="be brief"), Message(role="user", content="go")
    steer = Message(role="user", content="use metric units")
    first = _request([system, prompt, steer])
    assert steplog.steering_in(first, None) == ["use metric units"]
    answer = Message(role="assistant", content="working")
    tool = Message(role="tool", content="4", tool_call_id="c1")
    second = _request([*first.messages, answer, tool])
    assert steplog.steering_in(second, first) == []
    finish = Message(role="user", content="The run's budget is exhausted ...")
    later = Message(role="user", content="just answer")
    last = _request([*second.messages, finish, later], allow_tools=False)
    assert steplog.steering_in(last, second) == ["just answer"]


def test_shorten_cuts_at_a_word_boundary() -> None:
    reason = "tool call failed: connection refused while fetching the page"
    assert shorten(reason, 100) == reason
    cut = shorten(reason, 40)
    assert len(cut) <= 40 and cut.endswith("…")
    assert cut == "tool call failed: connection refused…"
    assert shorten("a\n  b", 10) == "a b"
    # One long word is still cut, not dropped.
    assert shorten("x" * 50, 10) == "x" * 9 + "…"


def test_clip_says_how_much_was_left_out() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcdef", 3) == "abc… [3 more characters]"


_text = st.text(max_size=8)
_arguments = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3) | _text, max_size=2)


@st.composite
def _steps_and_messages(draw: st.DrawFn) -> tuple[list[StepRecord], list[Message]]:
    """Steps and the messages a run holds for them, each value equal to its message or not."""
    steps: list[StepRecord] = []
    messages = [Message(role="user", content=draw(_text))]
    for number in range(1, draw(st.integers(0, 4)) + 1):
        text = draw(_text)
        calls: list[ToolCallRecord] = []
        said: list[ToolCall] = []
        results: list[Message] = []
        for index in range(1, draw(st.integers(0, 3)) + 1):
            call_id = steplog.tool_call_id(number, index)
            arguments = draw(_arguments)
            said.append(
                ToolCall(
                    id=call_id,
                    name="t",
                    arguments=arguments if draw(st.booleans()) else draw(_arguments),
                )
            )
            content = draw(_text)
            failed = draw(st.booleans())
            if draw(st.booleans()):  # some calls never got a tool message (cancelled)
                results.append(Message(role="tool", content=content, tool_call_id=call_id))
            result = None if failed else (content if draw(st.booleans()) else draw(_text))
            calls.append(
                ToolCallRecord(
                    id=call_id,
                    name="t",
                    arguments=arguments,
                    result=result,
                    error="boom" if failed else None,
                )
            )
        reply = text if draw(st.booleans()) else draw(_text)
        messages += [Message(role="assistant", content=reply, tool_calls=said), *results]
        steps.append(StepRecord(step=number, text=text, tool_calls=calls, started_at=NOW))
    return steps, messages


@given(_steps_and_messages())
def test_step_records_slimmed_by_the_messages_are_filled_back_exactly(
    case: tuple[list[StepRecord], list[Message]],
) -> None:
    steps, messages = case
    slim, left_out = steplog.slimmed(steps, messages)
    assert steplog.filled(slim, left_out, messages) == steps
    assert len(left_out) == len(set(left_out))
    # Only what the messages say the same is left out, and all of it.
    for step, kept in zip(steps, slim, strict=True):
        if f"text:{step.step}" not in left_out:
            assert kept.text == step.text
        for call, kept_call in zip(step.tool_calls, kept.tool_calls, strict=True):
            if f"arguments:{call.id}" not in left_out:
                assert kept_call.arguments == call.arguments
            if f"result:{call.id}" not in left_out:
                assert kept_call.result == call.result


def test_filling_from_messages_that_lack_a_call_is_an_error() -> None:
    call = ToolCallRecord(id="call_1_1", name="t", arguments={"a": 1}, result="r")
    step = StepRecord(step=1, text="why", tool_calls=[call], started_at=NOW)
    said = Message(
        role="assistant",
        content="why",
        tool_calls=[ToolCall(id="call_1_1", name="t", arguments={"a": 1})],
    )
    slim, left_out = steplog.slimmed(
        [step], [said, Message(role="tool", content="r", tool_call_id="call_1_1")]
    )
    assert sorted(left_out) == ["arguments:call_1_1", "result:call_1_1", "text:1"]
    with pytest.raises(KeyError):
        steplog.filled(slim, left_out, [said])


def test_call_ids_are_unique_in_the_reply_and_against_the_conversation() -> None:
    def reply(*ids: str) -> ModelResponse:
        return ModelResponse(tool_calls=[ToolCall(id=i, name="calculator") for i in ids])

    def ids(response: ModelResponse) -> list[str]:
        return [call.id for call in response.tool_calls]

    assert ids(steplog.with_unique_call_ids(reply("", "a", "a"), 2)) == [
        "call_2_1",
        "a",
        "call_2_3",
    ]
    # A fork or a session's message begins at step 1 again, after calls of its own step 1.
    taken = ["call_1_1", "call_1_2", "call_1_1_2", "x"]
    renamed = steplog.with_unique_call_ids(reply("", "call_1_2", "x", "y"), 1, taken)
    assert ids(renamed) == ["call_1_1_3", "call_1_2_2", "call_1_3", "y"]
