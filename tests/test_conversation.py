"""The conversation (onward.conversation) as a plain object: no server needed."""

from __future__ import annotations

import pytest

from onward.contracts import ModelResponse, ToolCall, ToolOutcome
from onward.conversation import Conversation, truncate


def test_messages_keep_their_order_and_roles() -> None:
    conversation = Conversation()
    conversation.add_system("be brief")
    conversation.add_user("what is 2+2?")
    call = ToolCall(id="c1", name="calculator", arguments={"expression": "2+2"})
    conversation.add_assistant(ModelResponse(text="computing", tool_calls=[call]))
    conversation.add_tool_result(call, ToolOutcome(content="4"))
    messages = conversation.for_model()
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2].tool_calls == [call]
    assert (messages[3].tool_call_id, messages[3].name, messages[3].content) == (
        "c1",
        "calculator",
        "4",
    )
    assert len(conversation) == 4


def test_for_model_is_a_copy() -> None:
    conversation = Conversation()
    conversation.add_user("hi")
    conversation.for_model().clear()
    assert len(conversation) == 1


def test_tool_errors_are_marked_and_results_cut_to_the_tool_limit() -> None:
    conversation = Conversation()
    call = ToolCall(id="c1", name="read_file")
    conversation.add_tool_result(call, ToolOutcome(error="no such file"))
    conversation.add_tool_result(call, ToolOutcome(content="y" * 30), limit=10)
    failed, cut = conversation.for_model()
    assert (failed.content, failed.is_error) == ("Error: no such file", True)
    assert cut.content == "y" * 10 + "\n[truncated: showing 10 of 30 characters]"
    assert not cut.is_error


def test_truncate() -> None:
    assert truncate("abc", 3) == ("abc", False)
    assert truncate("abcd", 3) == ("abc\n[truncated: showing 3 of 4 characters]", True)


def test_forgotten_messages_keep_their_positions() -> None:
    conversation = Conversation()
    for text in ["a", "b", "c", "d"]:
        conversation.add_user(text)
    conversation.forget_before(2)
    assert [m.content for m in conversation.held()] == ["c", "d"]
    conversation.add_user("e")
    # Positions count every message added, forgotten or not.
    assert len(conversation) == 5
    assert [m.content for m in conversation.since(3)] == ["d", "e"]
    assert [m.content for m in conversation.held()] == ["c", "d", "e"]
    # Forgetting again, or before what is already gone, changes nothing.
    conversation.forget_before(1)
    assert len(conversation) == 5
    assert [m.content for m in conversation.held()] == ["c", "d", "e"]


def test_reading_a_forgotten_message_is_an_error() -> None:
    conversation = Conversation()
    conversation.add_user("a")
    conversation.add_user("b")
    conversation.forget_before(1)
    with pytest.raises(ValueError, match="message 0 was forgotten"):
        conversation.since(0)
    with pytest.raises(ValueError, match="forgotten"):
        conversation.for_model()
