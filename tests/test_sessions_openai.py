"""A session through the OpenAI protocol: the fake server sees every earlier turn, tools too."""

from __future__ import annotations

from pathlib import Path

from provider_servers import OPENAI_PATH, FakeProvider, openai_completion
from temporalio.client import Client
from test_providers_e2e import KEY, provider_worker

from onward.client import OnwardClient


async def test_each_message_sends_the_whole_conversation_to_openai(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(None, [("call_1", "calculator", {"expression": "17*3"})]),
            openai_completion("51."),
            openai_completion("55."),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            onward = OnwardClient(client, task_queue=worker.task_queue)
            session_id = await onward.open_session(
                {"model": "openai:gpt-4o-mini", "system": "Be brief.", "tools": ["calculator"]}
            )
            first = await onward.send_message(session_id, "What is 17*3?")
            second = await onward.send_message(session_id, "Plus 4?")
            await onward.close_session(session_id)
            result = await onward.session_result(session_id)

    assert (first.reply, second.reply) == ("51.", "55.")
    assert first.steps[0].tool_calls[0].result == "51"
    assert result.turns == 2
    assert result.usage.model_calls == 3
    assert result.usage.total_tokens == first.usage.total_tokens + second.usage.total_tokens
    last = server.requests[-1].json["messages"]
    assert [message["role"] for message in last] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert last[0]["content"] == "Be brief."
    assert last[1]["content"] == "What is 17*3?"
    assert last[2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert last[3]["content"] == "51"
    assert last[4]["content"] == "51."
    assert last[5]["content"] == "Plus 4?"
