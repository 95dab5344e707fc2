"""Whole agent runs through the OpenAI and Anthropic protocols, on the real dev server.

The providers talk to local fake servers (``provider_servers``), configured
the way a worker is: through ``providers_from_env``. Each test scripts the
server's answers and checks both the run's result and what the model was sent.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Recorded,
    Reply,
    anthropic_message,
    openai_completion,
)
from temporalio.client import Client

from conftest import RunningWorker, running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.activities.providers.settings import ModelCallSettings
from onward.contracts import AgentResult
from onward.starter.history import reconstruct
from onward.starter.render import step_lines

KEY = "test-key"
SECRET = "sk-test-secret-4242"
"""A key the 401 tests check never appears anywhere."""

GPT_4O_MINI = (0.15, 0.6)
CLAUDE_HAIKU = (0.8, 4.0)
"""USD per million input / output tokens, from onward/pricing.json."""


@asynccontextmanager
async def provider_worker(
    client: Client, tmp_path: Path, names: list[str], environ: Mapping[str, str]
) -> AsyncIterator[RunningWorker]:
    """A worker whose providers and model attempts come from ``environ``, closed afterwards."""
    providers = providers_from_env(environ)
    attempts = ModelCallSettings.from_env(environ).max_attempts
    try:
        async with running_worker(
            client, tmp_path / "ws", names, providers=providers, model_max_attempts=attempts
        ) as worker:
            yield worker
    finally:
        await close_providers(providers)


def cost(usage: tuple[int, int], price: tuple[float, float]) -> float:
    return (usage[0] * price[0] + usage[1] * price[1]) / 1e6


def gaps(requests: list[Recorded]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]


# -- multi-step runs ----------------------------------------------------------------------


async def test_openai_run_with_tools_completes(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(
                "I need the total first.",
                [("call_1", "calculator", {"expression": "17 * 3 + 4"})],
                usage=(100, 20),
            ),
            openai_completion(
                None,
                [
                    ("call_2", "calculator", {"expression": "55 / 5"}),
                    ("call_3", "calculator", '{"expression": "2 +'),  # malformed JSON
                ],
                usage=(150, 30),
            ),
            openai_completion("The total is 55; a fifth is 11.", usage=(200, 10)),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "Add things up",
                    "system": "Use the calculator.",
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "settings": {
                        "temperature": 0.2,
                        "max_output_tokens": 256,
                        "stop": ["END"],
                        "seed": 7,
                        "parallel_tool_calls": True,
                    },
                }
            )

    assert result.status == "completed", result.reason
    assert result.output == "The total is 55; a fifth is 11."
    assert [len(step.tool_calls) for step in result.steps] == [1, 2, 0]
    first, second, _ = result.steps
    assert (first.tool_calls[0].result, first.tool_calls[0].error) == ("55", None)
    ok, malformed = second.tool_calls
    assert ok.result == "11.0"
    assert malformed.arguments == {"_raw": '{"expression": "2 +'}
    assert malformed.error is not None and "expression" in malformed.error

    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.model_calls) == (450, 60, 3)
    assert usage.cost_known
    assert usage.cost_usd == pytest.approx(cost((450, 60), GPT_4O_MINI))

    one, two, three = server.requests
    assert one.headers["authorization"] == f"Bearer {KEY}"
    body = one.json
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "Use the calculator."},
        {"role": "user", "content": "Add things up"},
    ]
    assert [tool["function"]["name"] for tool in body["tools"]] == ["calculator"]
    assert "expression" in body["tools"][0]["function"]["parameters"]["properties"]
    assert (body["temperature"], body["max_completion_tokens"]) == (0.2, 256)
    assert (body["stop"], body["seed"], body["parallel_tool_calls"]) == (["END"], 7, True)

    sent = two.json["messages"]
    assert sent[2]["tool_calls"][0]["id"] == "call_1"
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": "55"}
    results = three.json["messages"][-2:]
    assert results[0] == {"role": "tool", "tool_call_id": "call_2", "content": "11.0"}
    assert results[1]["tool_call_id"] == "call_3"
    assert results[1]["content"].startswith("Error: the arguments were not valid JSON")


async def test_anthropic_run_with_tools_completes(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            anthropic_message(
                "Computing both.",
                [
                    ("toolu_1", "calculator", {"expression": "6 * 7"}),
                    ("toolu_2", "calculator", {"expression": "1 / 0"}),
                ],
                usage=(300, 40),
            ),
            anthropic_message(
                None, [("toolu_3", "calculator", {"expression": "42 + 1"})], usage=(400, 20)
            ),
            anthropic_message("42, and 1/0 is undefined.", usage=(500, 15)),
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "Compute 6*7 and 1/0",
                    "system": "Be exact.",
                    "model": "anthropic:claude-3-5-haiku-latest",
                    "tools": ["calculator"],
                    # the wire as converted; test_cost.py checks the cache breakpoints
                    "settings": {"cache_prompt": False},
                }
            )

    assert result.status == "completed", result.reason
    assert result.output == "42, and 1/0 is undefined."
    assert result.steps[0].text == "Computing both."
    answer, zero = result.steps[0].tool_calls
    assert answer.result == "42"
    assert zero.error == "calculator: division by zero"
    assert result.steps[1].tool_calls[0].result == "43"
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.model_calls) == (1200, 75, 3)
    assert usage.cost_usd == pytest.approx(cost((1200, 75), CLAUDE_HAIKU))

    one, two, three = server.requests
    assert one.headers["x-api-key"] == KEY
    assert one.headers["anthropic-version"] == "2023-06-01"
    body = one.json
    assert body["model"] == "claude-3-5-haiku-latest"
    assert body["system"] == "Be exact."
    assert body["max_tokens"] == 4096
    assert [tool["name"] for tool in body["tools"]] == ["calculator"]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Compute 6*7 and 1/0"}]}
    ]
    # both results in one user message; the error one flagged
    messages = two.json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][1:] == [
        {"type": "tool_use", "id": "toolu_1", "name": "calculator",
         "input": {"expression": "6 * 7"}},
        {"type": "tool_use", "id": "toolu_2", "name": "calculator",
         "input": {"expression": "1 / 0"}},
    ]  # fmt: skip
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
        {"type": "tool_result", "tool_use_id": "toolu_2",
         "content": "Error: calculator: division by zero", "is_error": True},
    ]  # fmt: skip
    last = three.json["messages"]
    assert last[-1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_3",
                                    "content": "43"}]  # fmt: skip


# -- failures and recovery ---------------------------------------------------------------


async def test_a_429_storm_is_ridden_out_honouring_retry_after(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    limited = Reply(429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "1"})
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(limited, limited, limited, openai_completion("made it", usage=(10, 2)))
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run({"prompt": "hi", "model": "openai:gpt-4o-mini"})

    assert result.status == "completed", result.reason
    assert result.output == "made it"
    assert result.usage.model_calls == 1
    assert len(server.requests) == 4
    waits = gaps(server.requests)
    assert all(wait >= 1.0 for wait in waits), waits
    # Retry-After, not the policy's backoff (1, 2, 4 s), set the pace
    assert waits[-1] < 3.5, waits


async def test_retries_are_bounded_by_the_worker_and_the_last_error_is_clear(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
) -> None:
    busy = Reply(503, {"error": {"message": "upstream overloaded"}}, headers={"Retry-After": "1"})
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(busy, busy, busy, busy)
        environ = {
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "OPENAI_API_KEY": KEY,
            "ONWARD_MODEL_MAX_ATTEMPTS": "3",
        }
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start({"prompt": "hi", "model": "openai:gpt-4o-mini"})
            result = await handle.result()

    # One setting decides: the run's retry policy carries the worker's limit.
    model_calls = [
        event.activity_task_scheduled_event_attributes
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    ]
    assert [call.retry_policy.maximum_attempts for call in model_calls] == [3]
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.endswith(
        "gave up after 3 attempts: openai: 503 Service Unavailable: upstream overloaded"
    )
    assert len(server.requests) == 3 and server.pending == 1


async def test_a_401_fails_the_run_at_once_keeping_finished_steps(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {
        "error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "invalid_api_key"}
    }
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion("step one", [("call_1", "calculator", {"expression": "2 + 2"})]),
            Reply(401, echo),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": SECRET}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start({"prompt": "hi", "model": "openai:gpt-4o-mini"})
            result = await handle.result()
            history = [event.SerializeToString() async for event in handle.fetch_history_events()]

    assert result.status == "failed"
    assert result.reason is not None and result.reason.startswith("model call failed: ")
    assert result.reason.endswith(
        "openai: 401 Unauthorized: Incorrect API key provided: [redacted]. "
        "(check OPENAI_API_KEY on the worker)"
    )
    assert len(server.requests) == 2  # not retried
    assert result.steps[0].tool_calls[0].result == "4"
    assert result.usage.model_calls == 1
    assert_no_secret(result, history, caplog.text)


async def test_an_anthropic_401_at_the_first_step(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    error = {"type": "error", "error": {"type": "authentication_error",
                                        "message": "invalid x-api-key"}}  # fmt: skip
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(Reply(401, error))
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": SECRET}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run({"prompt": "hi", "model": "anthropic:claude-x"})

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.endswith(
        "anthropic: 401 Unauthorized: invalid x-api-key (check ANTHROPIC_API_KEY on the worker)"
    )
    assert len(server.requests) == 1


async def test_a_missing_key_fails_the_run_with_what_to_set(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with provider_worker(client, tmp_path, search_attribute_names, {}) as worker:
        result = await worker.run({"prompt": "hi", "model": "openai:gpt-4o-mini"})
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.endswith(
        "openai: OPENAI_API_KEY is not set on the worker; set it in the "
        "worker's environment and restart the worker"
    )


async def test_a_hanging_server_is_timed_out_and_retried(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            Reply(json=openai_completion("too late"), delay_s=5),
            openai_completion("on time", usage=(5, 1)),
        )
        environ = {
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "OPENAI_API_KEY": KEY,
            "ONWARD_MODEL_TIMEOUT_S": "1",
        }
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run({"prompt": "hi", "model": "openai:gpt-4o-mini"})

    assert result.status == "completed", result.reason
    assert result.output == "on time"
    assert len(server.requests) == 2
    # Given up at the 1 s timeout, not waited out (its answer was 5 s away). No lower
    # bound: the server stamps a request once it has read it, which on a busy machine
    # is well after the call's clock started (0.68 s apart once, beside another suite).
    assert gaps(server.requests)[0] < 4.0


async def test_malformed_json_then_success_completes(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            Reply(200, body=b'{"content": [{"type": "te'),
            Reply(200, json={"unexpected": True}),
            anthropic_message("fine now", usage=(7, 3)),
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run({"prompt": "hi", "model": "anthropic:claude-x"})

    assert result.status == "completed", result.reason
    assert result.output == "fine now"
    assert len(server.requests) == 3
    assert result.usage.cost_known is False  # claude-x has no price


def assert_no_secret(result: AgentResult, history: list[bytes], logs: str) -> None:
    assert SECRET not in result.model_dump_json()
    assert not any(SECRET.encode() in event for event in history)
    assert SECRET not in logs


async def test_an_answer_without_usage_is_estimated_and_stops_a_cost_budget(
    client: Client,
    tmp_path: Path,
    search_attribute_names: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Some OpenAI-compatible servers leave usage out. Counted as 0 tokens and $0,
    # such a run kept no budget at all: a priced model looked free.
    unreported = openai_completion(
        "Let me compute.", [("call_1", "calculator", {"expression": "6 * 7"})]
    )
    del unreported["usage"]
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(unreported, openai_completion("42", usage=(30, 2)))
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            prompt = "What is six times seven? " * 20  # 500 characters: about 125 tokens
            unbudgeted = await worker.run(
                {"prompt": prompt, "model": "openai:gpt-4o-mini", "tools": ["calculator"]}
            )
            server.script(unreported)  # the run stops before asking again
            budgeted = await worker.run(
                {
                    "prompt": prompt,
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "budget": {"max_cost_usd": 1.0},
                }
            )
            # A free model (a local one, priced 0) costs 0 whatever its tokens.
            server.script(unreported, openai_completion("42", usage=(30, 2)))
            free = await worker.run(
                {
                    "prompt": prompt,
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "budget": {"max_cost_usd": 1.0},
                    "pricing": {"input_per_mtok": 0, "output_per_mtok": 0},
                }
            )

    assert unbudgeted.status == "completed", unbudgeted.reason
    usage = unbudgeted.usage
    assert 125 <= usage.input_tokens - 30 <= 140  # the estimate, then the reported 30
    assert usage.output_tokens > 2 and usage.cost_known is False and usage.tokens_estimated

    assert budgeted.status == "budget_exceeded"
    assert budgeted.reason == (
        "max_cost_usd: cost unknown (an answer reported no token usage); a cost budget "
        "needs a provider that reports it (streamed Chat Completions: "
        "stream_options.include_usage)"
    )
    assert [call.status for call in budgeted.steps[0].tool_calls] == ["not_run"]
    assert budgeted.usage.model_calls == 1  # stopped before spending on a guess
    assert caplog.text.count("openai reported no token usage") == 1  # once per worker
    assert free.status == "completed", free.reason
    assert free.usage.cost_known and free.usage.cost_usd == 0 and free.usage.tokens_estimated


# -- answers the model did not end itself ---------------------------------------------------


async def test_an_answer_cut_off_at_the_output_limit_says_so(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # A provider that stops at max_tokens returns what it had: a tool call's arguments
    # cut mid-JSON, or half an answer that read as the run's whole output.
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(
                "Computing.",
                [("call_1", "calculator", '{"expression": "6 *')],
                finish_reason="length",
            ),
            openai_completion("Asking again.", [("call_2", "calculator", {"expression": "6 * 7"})]),
            openai_completion("Six times seven is", finish_reason="length"),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            handle = await worker.start(
                {
                    "prompt": "What is six times seven?",
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "settings": {"max_output_tokens": 8},
                }
            )
            result = await handle.result()
            events = [event async for event in handle.fetch_history_events()]

    assert result.status == "completed"
    assert result.output == "Six times seven is"
    assert result.reason == (
        "the answer was cut off at the model's output token limit "
        "(finish_reason length; settings.max_output_tokens raises it)"
    )
    assert [step.finish_reason for step in result.steps] == ["length", None, "length"]
    [cut] = result.steps[0].tool_calls
    assert cut.status == "error" and "not valid JSON" in (cut.error or "")
    assert result.steps[1].tool_calls[0].result == "42"
    # `onward steps` of the ended run reads the same from its history, and says it.
    assert [step.finish_reason for step in reconstruct(events).step_log] == [
        "length",
        None,
        "length",
    ]
    assert step_lines(result.steps[2])[-1].endswith(" · cut off at the output token limit")


async def test_a_whole_final_answer_before_the_output_limit_is_not_cut_off(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The model gave its whole answer, then was cut off in a call beside it: the run
    # took the answer, so its reason saying "cut off" would send users to raise a
    # limit for nothing. The step still tells what the provider said.
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(
                None,
                [
                    ("call_a", "final_answer", {"answer": 42}),
                    ("call_b", "calculator", '{"expression": "6 *'),
                ],
                finish_reason="length",
            ),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "What is six times seven?",
                    "model": "openai:gpt-4o-mini",
                    "tools": ["calculator"],
                    "output_schema": schema,
                }
            )

    assert result.status == "completed"
    assert result.reason is None
    assert result.structured_output == {"answer": 42}
    [step] = result.steps
    assert step.finish_reason == "length"
    assert [call.status for call in step.tool_calls] == ["ok", "not_run"]


async def test_an_anthropic_refusal_and_max_tokens_are_named(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    async with FakeProvider(ANTHROPIC_PATH) as server:
        server.script(
            anthropic_message("Let me", stop_reason="max_tokens"),
            anthropic_message(None, stop_reason="refusal"),
        )
        environ = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            cut = await worker.run({"prompt": "hi", "model": "anthropic:claude-3-5-haiku"})
            refused = await worker.run({"prompt": "hi", "model": "anthropic:claude-3-5-haiku"})

    assert (cut.status, cut.output, cut.steps[0].finish_reason) == ("completed", "Let me", "length")
    assert cut.reason is not None and "cut off" in cut.reason
    assert (refused.status, refused.output) == ("completed", "")
    assert refused.steps[0].finish_reason == "content_filter"
    assert refused.reason == (
        "the provider withheld the answer or part of it (finish_reason content_filter)"
    )


async def test_output_schema_is_offered_as_final_answer_and_its_errors_are_read(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion(None, [("call_a", "final_answer", {"answer": "forty-two"})]),
            openai_completion("It is 42."),
            openai_completion(None, [("call_b", "final_answer", {"answer": 42})]),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            result = await worker.run(
                {
                    "prompt": "What is six times seven?",
                    "model": "openai:gpt-4o-mini",
                    "tools": [],
                    "output_schema": schema,
                }
            )

    assert result.status == "completed", result.reason
    assert result.structured_output == {"answer": 42} and result.output == '{"answer": 42}'
    first, second, third = (request.json for request in server.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "final_answer",
                "description": first["tools"][0]["function"]["description"],
                "parameters": schema,
            },
        }
    ]
    assert second["messages"][-1]["role"] == "tool"
    assert "answer: 'forty-two' is not of type 'integer'" in second["messages"][-1]["content"]
    assert third["messages"][-1] == {
        "role": "user",
        "content": "Answer by calling the final_answer tool with arguments that match its "
        "schema; an answer in plain text is not taken.",
    }
