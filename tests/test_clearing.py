"""Tool-result clearing: older tool results are sent as a placeholder, the transcript keeps them.

The rule is checked as a pure function (what is cleared, in which steps, and
that a longer conversation never brings a result back), then through a whole
run against a local server speaking the OpenAI protocol: what each request
carries, the step log, and the transcript in the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_servers import OPENAI_PATH, FakeProvider, openai_completion
from pydantic import ValidationError
from temporalio.client import Client

from conftest import running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.activities.tools.registry import ToolRegistry, tool
from onward.clearing import cleared
from onward.contracts import (
    AgentInput,
    Budget,
    ClearToolResults,
    Message,
    RunUsage,
    SessionInput,
    ToolCall,
)
from onward.delegation import DelegateArgs, child_input
from onward.sessions import message_input
from onward.starter.render import step_lines
from onward.store import TranscriptStore

PAGE_CHARS = 4_000
"""A page is about 1,000 estimated tokens."""


def page_text(number: int) -> str:
    return f"page {number}: " + "lorem ipsum " * (PAGE_CHARS // 12)


def conversation(pages: int, tool: str = "page") -> list[Message]:
    """The task, then ``pages`` steps of one tool call and its (large) result."""
    messages = [Message(role="system", content="Be brief."), Message(role="user", content="Read.")]
    for number in range(1, pages + 1):
        call = ToolCall(id=f"c{number}", name=tool, arguments={"number": number})
        messages.append(Message(role="assistant", tool_calls=[call]))
        messages.append(
            Message(role="tool", tool_call_id=call.id, name=tool, content=page_text(number))
        )
    return messages


def placeholders(messages: list[Message]) -> list[bool]:
    """For each tool result, whether it was sent as the placeholder."""
    return [m.content.startswith("[tool result cleared") for m in messages if m.role == "tool"]


def test_a_short_conversation_is_sent_as_it_is() -> None:
    messages = conversation(2)
    sent, count = cleared(messages, ClearToolResults(trigger_tokens=2_500))
    assert (sent, count) == (messages, 0)
    assert cleared(conversation(9), None) == (conversation(9), 0)


def test_past_the_trigger_older_results_go_and_the_last_ones_stay() -> None:
    policy = ClearToolResults(trigger_tokens=2_500, keep_tool_uses=2)
    sent, count = cleared(conversation(5), policy)
    assert placeholders(sent) == [True, True, True, False, False]
    assert count == 3
    # Only the results change: the calls, their ids and every other message stay.
    assert [(m.role, m.tool_call_id, m.tool_calls) for m in sent] == [
        (m.role, m.tool_call_id, m.tool_calls) for m in conversation(5)
    ]
    assert "4,0" in sent[3].content and "call the tool again" in sent[3].content


def test_clearing_waits_until_it_saves_enough_and_then_takes_several() -> None:
    """Each clearing restarts the provider's cache, so it clears in steps of at least N."""
    policy = ClearToolResults(trigger_tokens=2_500, keep_tool_uses=2, clear_at_least_tokens=1_500)
    shapes = [placeholders(cleared(conversation(n), policy)[0]) for n in range(1, 7)]
    assert shapes == [
        [False],
        [False, False],
        [False, False, False],  # one result would save ~1,000 tokens: not enough
        [True, True, False, False],
        [True, True, False, False, False],
        [True, True, True, True, False, False],
    ]


def test_excluded_tools_keep_their_results() -> None:
    messages = conversation(2, tool="keep") + conversation(4)[2:]
    policy = ClearToolResults(trigger_tokens=2_500, keep_tool_uses=1, exclude_tools=["keep"])
    sent, _ = cleared(messages, policy)
    kinds = [(m.name, m.content.startswith("[tool result cleared")) for m in sent if m.name]
    assert kinds == [("keep", False), ("keep", False), *[("page", True)] * 3, ("page", False)]


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3_000), min_size=1, max_size=30),
    trigger=st.integers(min_value=1, max_value=6_000),
    keep=st.integers(min_value=0, max_value=4),
    at_least=st.integers(min_value=0, max_value=3_000),
)
def test_a_longer_conversation_never_brings_a_result_back(
    sizes: list[int], trigger: int, keep: int, at_least: int
) -> None:
    """What an earlier call cleared stays cleared, so prompts between clearings share a prefix."""
    messages = [Message(role="user", content="task")]
    for index, size in enumerate(sizes):
        call = ToolCall(id=f"c{index}", name="page", arguments={})
        messages.append(Message(role="assistant", tool_calls=[call]))
        messages.append(Message(role="tool", tool_call_id=call.id, name="page", content="x" * size))
    policy = ClearToolResults(
        trigger_tokens=trigger, keep_tool_uses=keep, clear_at_least_tokens=at_least
    )
    earlier: list[Message] = []
    for end in range(1, len(messages) + 1):
        sent, count = cleared(messages[:end], policy)
        assert count == sum(placeholders(sent))
        assert sum(not gone for gone in placeholders(sent)) >= min(keep, len(placeholders(sent)))
        was = placeholders(earlier)
        assert placeholders(sent)[: len(was)][: sum(was)] == [True] * sum(was)
        if count == sum(was):  # nothing newly cleared: the earlier prompt is a prefix
            assert sent[: len(earlier)] == earlier
        earlier = sent


def test_the_policy_is_checked_and_sessions_pass_it_on() -> None:
    with pytest.raises(ValidationError, match="trigger_tokens"):
        AgentInput(prompt="x", clear_tool_results={"trigger_tokens": 0})
    with pytest.raises(ValidationError, match="keep_tool_uses"):
        AgentInput(prompt="x", clear_tool_results={"trigger_tokens": 9, "keep_tool_uses": -1})
    policy = ClearToolResults(trigger_tokens=8_000)
    session = SessionInput(clear_tool_results=policy)
    assert message_input(session, "next", RunUsage()).clear_tool_results == policy
    parent = AgentInput(prompt="x", clear_tool_results=policy)
    child = child_input(parent, DelegateArgs(prompt="sub"), Budget(), ["page"], "ws")
    assert child.clear_tool_results == policy


# -- a whole run ------------------------------------------------------------------------------


def pages_registry() -> ToolRegistry:
    @tool
    def page(number: int) -> str:
        """One page of a long document.

        Args:
            number: which page.
        """
        return page_text(number)

    return ToolRegistry.of([page])


async def test_a_run_sends_older_pages_as_placeholders_and_stores_them_whole(
    client: Client, tmp_path: Path, search_attribute_names: list[str], local_store: TranscriptStore
) -> None:
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            *(openai_completion(None, [(f"call_{n}", "page", {"number": n})]) for n in range(1, 6)),
            openai_completion("Five pages read."),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "test-key"}
        providers = providers_from_env(environ)
        try:
            async with running_worker(
                client,
                tmp_path / "ws",
                search_attribute_names,
                providers=providers,
                registry=pages_registry(),
                store=local_store,
            ) as worker:
                result = await worker.run(
                    {
                        "prompt": "Read five pages.",
                        "model": "openai:gpt-4o-mini",
                        "tools": ["page"],
                        "clear_tool_results": {
                            "trigger_tokens": 2_500,
                            "keep_tool_uses": 2,
                            "clear_at_least_tokens": 1_500,
                        },
                    }
                )
        finally:
            await close_providers(providers)

    assert result.status == "completed", result.reason
    assert result.output == "Five pages read."
    bodies = [request.json for request in server.requests]
    tool_results = [[m["content"] for m in b["messages"] if m["role"] == "tool"] for b in bodies]
    cleared_shapes = [[text.startswith("[tool result cleared") for text in t] for t in tool_results]
    assert cleared_shapes == [
        [],
        [False],
        [False, False],
        [False, False, False],
        [True, True, False, False],
        [True, True, False, False, False],
    ]
    assert tool_results[-1][2:] == [page_text(n) for n in (3, 4, 5)]
    # No clearing between the last two calls: the last prompt begins with the one before.
    assert bodies[5]["messages"][: len(bodies[4]["messages"])] == bodies[4]["messages"]
    assert [step.cleared_tool_results for step in result.steps] == [0, 0, 0, 0, 2, 2]
    assert step_lines(result.steps[4])[-1].endswith(" · 2 older tool results cleared")
    assert "cleared" not in step_lines(result.steps[3])[-1]
    # The store keeps every page in full.
    assert result.transcript is not None
    stored = await local_store.messages(result.transcript, 0, 100)
    assert [m.content for m in stored if m.role == "tool"] == [page_text(n) for n in range(1, 6)]
