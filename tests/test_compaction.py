"""Compaction planning: pure rules, no server."""

from __future__ import annotations

from onward.compaction import (
    SUMMARY_PREFIX,
    compacted,
    estimate_tokens,
    plan_compaction,
    summary_request,
)
from onward.contracts import Message, ToolCall


def conversation(turns: int, size: int = 400) -> list[Message]:
    messages = [Message(role="system", content="be brief"), Message(role="user", content="task")]
    for n in range(turns):
        call = ToolCall(id=f"call_{n}", name="calculator", arguments={"expression": f"{n}+1"})
        messages.append(
            Message(role="assistant", content=f"step {n} " + "r" * size, tool_calls=[call])
        )
        messages.append(
            Message(role="tool", content=str(n + 1), tool_call_id=call.id, name="calculator")
        )
    return messages


def test_a_conversation_that_fits_is_left_alone() -> None:
    messages = conversation(3)
    assert plan_compaction(messages, estimate_tokens(messages), keep_last_turns=1) is None


def test_older_turns_are_summarised_and_the_task_and_last_turns_kept() -> None:
    messages = conversation(10)
    plan = plan_compaction(messages, max_tokens=500, keep_last_turns=3)
    assert plan is not None
    assert plan.head == messages[:2]
    assert plan.tail == messages[-6:]  # three turns: assistant + tool result each
    assert plan.head + plan.middle + plan.tail == messages
    sent = compacted(plan, "did steps 0 to 6")
    assert sent[:2] == messages[:2]
    assert sent[2].content == SUMMARY_PREFIX + "did steps 0 to 6"
    assert sent[3:] == messages[-6:]
    assert estimate_tokens(sent) < estimate_tokens(messages)


def test_a_tool_result_is_never_separated_from_its_call() -> None:
    messages = conversation(6)
    plan = plan_compaction(messages, max_tokens=100, keep_last_turns=2)
    assert plan is not None
    assert plan.tail[0].role == "assistant"
    kept_calls = {call.id for m in plan.tail for call in m.tool_calls}
    assert {m.tool_call_id for m in plan.tail if m.role == "tool"} == kept_calls


def test_nothing_to_summarise_when_only_kept_turns_remain() -> None:
    messages = conversation(2, size=5000)
    assert plan_compaction(messages, max_tokens=10, keep_last_turns=2) is None
    plan = plan_compaction(conversation(5, size=5000), max_tokens=10, keep_last_turns=2)
    assert plan is not None
    again = plan_compaction(compacted(plan, "summary"), max_tokens=10, keep_last_turns=2)
    assert again is None  # only the summary is left to summarise


def test_the_summary_call_sees_the_older_turns_and_an_instruction() -> None:
    plan = plan_compaction(conversation(8), max_tokens=300, keep_last_turns=2)
    assert plan is not None
    request = summary_request(plan)
    assert request[: len(plan.head) + len(plan.middle)] == plan.head + plan.middle
    assert request[-1].role == "user" and "Summarise" in request[-1].content
