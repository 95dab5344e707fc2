"""Fallback models: a provider that fails a call (after its retries) hands the run to the next.

Two local servers speak the OpenAI and Anthropic protocols; the run starts on one and
goes on with the other, and every step says which model answered and what failed first.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from provider_servers import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    FakeProvider,
    Reply,
    anthropic_message,
    openai_completion,
)
from temporalio.client import Client
from test_providers_e2e import CLAUDE_HAIKU, GPT_4O_MINI, KEY, cost, provider_worker
from test_schedules import YEARLY, finished_run

from conftest import RunningWorker, eventually, run_onward, running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.client import OnwardClient
from onward.contracts import (
    AgentInput,
    AgentResult,
    CancelRequest,
    RunUsage,
    SessionInput,
    SteerRequest,
)
from onward.delegation import DelegateArgs, child_input
from onward.errors import named_problem
from onward.sessions import message_input
from onward.starter.api.events import EventTranslator
from onward.starter.api.models import RunRequest
from onward.starter.follow import history_status
from onward.starter.history import reconstruct
from onward.starter.render import step_lines
from onward.starter.report import aggregate
from onward.starter.timeline import trace_lines
from onward.starter.trace import trace_of
from onward.worker import WorkerSettings, build_worker
from onward.workflows.agent import AgentWorkflow

OPENAI = "openai:gpt-4o-mini"
CLAUDE = "anthropic:claude-3-5-haiku-latest"


def environ(openai: FakeProvider, anthropic: FakeProvider) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{openai.url}/v1",
        "OPENAI_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": anthropic.url,
        "ANTHROPIC_API_KEY": KEY,
        "ONWARD_MODEL_MAX_ATTEMPTS": "2",
    }


async def test_a_failing_provider_hands_the_run_to_the_fallback_for_good(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    busy = Reply(503, {"error": {"message": "upstream overloaded"}})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            openai_completion("Adding.", [("call_1", "calculator", {"expression": "2 + 2"})]),
            busy,
            busy,
            openai_completion("never asked"),
        )
        anthropic.script(
            anthropic_message(None, [("toolu_1", "calculator", {"expression": "4 * 10"})]),
            anthropic_message("40", usage=(30, 2)),
        )
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {
                    "prompt": "Compute (2+2)*10",
                    "model": OPENAI,
                    "fallback_models": [CLAUDE],
                    "tools": ["calculator"],
                    "settings": {"cache_prompt": False},
                }
            )
            result = await handle.result()
            events = [event async for event in handle.fetch_history_events()]
            history = reconstruct(events)
            description = await handle.describe()

    assert result.status == "completed", result.reason
    assert result.output == "40"
    first, second, third = result.steps
    assert (first.model, second.model, third.model) == (OPENAI, CLAUDE, CLAUDE)
    assert first.failed_models is None and third.failed_models is None
    assert second.failed_models == [
        f"{OPENAI}: gave up after 2 attempts: openai: 503 Service Unavailable: upstream overloaded"
    ]
    assert second.tool_calls[0].result == "40"
    assert step_lines(second)[1:3] == [
        f"        ↷ failed: {second.failed_models[0]}",
        f"        ↷ answered by {CLAUDE}",
    ]
    # Read back from the history alone (`onward steps` of a run whose worker is gone): the same.
    read = [step.record for step in history.steps]
    assert [(s.step, s.model, s.failed_models) for s in read] == [
        (s.step, s.model, s.failed_models) for s in result.steps
    ]
    # The ended run's status (`onward status`, GET /v1/runs/{id}) names the model it went on
    # with, as its status query did while it ran and its OnwardModel search attribute does.
    assert history_status(description, history).model == CLAUDE
    # `onward trace` shows the failed call where it ran, and `onward report` counts it as
    # its model's error: an outage is the failing model's, not hidden behind the fallback.
    trace = trace_of(description, history)
    # `onward trace` names it too (its header, `model` in --json), as it does once the run
    # has continued as new: it named the model the run began with until then.
    assert trace.model == CLAUDE
    assert trace_lines(trace)[0] == f"run {handle.id} · completed · model {CLAUDE}"
    (failed,) = trace.steps[1].failed_model_calls
    assert (failed.name, failed.state, failed.attempts) == (OPENAI, "failed", 2)
    assert trace.steps[1].failed_models == second.failed_models
    # The step's time counts from its first call: the failed call and its retries are in it
    # (`onward steps` said 0.03 s of a step that waited 0.3 s on a provider), read back alike.
    assert failed.scheduled_at is not None and failed.latency_ms is not None
    for step in (second, read[1]):
        assert step.started_at is not None and step.started_at <= failed.scheduled_at
        assert step.duration_ms is not None and step.duration_ms >= failed.latency_ms
    rows = [re.match(r"(\S*)\s+\+[\d.]+s\s+model (\S+)", line) for line in trace_lines(trace)]
    assert [row.groups() for row in rows if row] == [
        ("1", OPENAI),
        ("2", OPENAI),  # the step's first call failed ...
        ("", CLAUDE),  # ... and the fallback answered it
        ("3", CLAUDE),
    ]
    failed_row = next(line for line in trace_lines(trace) if line.startswith("2 "))
    assert failed_row.endswith(f"(fell back to {CLAUDE})")
    at = [re.search(r" \+([\d.]+)s ", line) for line in trace_lines(trace)]
    offsets = [float(found[1]) for found in at if found]
    assert len(offsets) == 6  # four model calls, two calculator calls
    assert offsets == sorted(offsets)  # rows in the order the calls were made
    now = datetime.now(UTC)
    by_model = {m.name: m for m in aggregate([trace], now, now).models}
    assert (by_model[OPENAI].calls, by_model[OPENAI].errors, by_model[OPENAI].retried) == (2, 1, 1)
    assert (by_model[CLAUDE].calls, by_model[CLAUDE].errors) == (2, 0)
    # A step log without the history (its calls unread) still names the failed model.
    bare = trace.model_copy(
        update={"steps": [s.model_copy(update={"failed_model_calls": []}) for s in trace.steps]}
    )
    by_model = {m.name: m for m in aggregate([bare], now, now).models}
    assert (by_model[OPENAI].calls, by_model[OPENAI].errors) == (2, 1)
    # The event stream names the model whose call failed, and the one that went on.
    translator = EventTranslator()
    streamed = [(e.event, e.data) for event in events for e in translator.add(event)]
    models = [(name, data) for name, data in streamed if name in ("model_started", "model_error")]
    assert [(name, data["step"], data["model"]) for name, data in models] == [
        ("model_started", 1, OPENAI),
        ("model_started", 2, OPENAI),
        ("model_error", 2, OPENAI),
        ("model_started", 2, CLAUDE),
        ("model_started", 3, CLAUDE),
    ]
    # The failed provider is not asked again; the fallback was sent the whole conversation.
    assert len(openai.requests) == 3 and openai.pending == 1
    sent = anthropic.requests[0].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][-1] == {
        "type": "tool_use", "id": "call_1", "name": "calculator",
        "input": {"expression": "2 + 2"},
    }  # fmt: skip
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "4"}]
    # Each answer is priced as its own model's.
    usage = result.usage
    assert usage.model_calls == 3
    assert usage.cost_usd == pytest.approx(
        cost((10, 5), GPT_4O_MINI) + cost((10 + 30, 5 + 2), CLAUDE_HAIKU)
    )


async def test_when_every_model_fails_the_run_fails_saying_what_each_did(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    unauthorized = Reply(401, {"error": {"message": "bad key"}})
    gone = {"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(unauthorized)
        anthropic.script(Reply(404, gone))
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            result = await worker.run(
                {"prompt": "hi", "model": OPENAI, "fallback_models": [CLAUDE]}
            )

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.startswith("model call failed on all 2 models; the last: anthropic: 404")
    (step,) = result.steps
    assert step.model == CLAUDE and step.error is not None and "no such model" in step.error
    assert step.failed_models is not None
    assert step.failed_models[0].startswith(f"{OPENAI}: openai: 401 Unauthorized: bad key")
    # Neither was retried: a 401 and a 404 need a person, not another attempt.
    assert (len(openai.requests), len(anthropic.requests)) == (1, 1)


async def test_a_failure_that_is_not_the_providers_does_not_fall_back(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # Unpriced under a cost budget: the worker refuses the call before any provider is asked.
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            result = await worker.run(
                {
                    "prompt": "hi",
                    "model": "openai:unpriced-model",
                    "fallback_models": [CLAUDE],
                    "budget": {"max_cost_usd": 1},
                }
            )
    assert result.status == "budget_exceeded"
    assert (len(openai.requests), len(anthropic.requests)) == (0, 0)


async def test_sub_agents_begin_on_the_model_their_parent_went_on_with(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A parent that fell back delegates on the fallback (its own model is down); a
    sub-agent whose own model fails falls back itself, its parent going on with its own.
    Each call is priced as its model's, and the parent's usage adds up the sub-agent's."""
    unauthorized = Reply(401, {"error": {"message": "bad key"}})
    delegate_call = ("delegate", {"prompt": "compute 6*7"})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            unauthorized,  # the first parent's step 1: it goes on with Claude
            openai_completion(None, [("call_1", *delegate_call)]),  # the second parent
            unauthorized,  # the second parent's sub-agent
            openai_completion("It is 42.", usage=(30, 4)),
        )
        anthropic.script(
            anthropic_message(None, [("toolu_1", *delegate_call)]),
            anthropic_message("42", usage=(20, 3)),  # the sub-agent, on Claude from its start
            anthropic_message("It is 42.", usage=(40, 4)),
            anthropic_message("42", usage=(20, 3)),  # the second parent's sub-agent
        )
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            runs = []
            for _ in range(2):
                handle = await worker.start(
                    {
                        "prompt": "What is 6*7?",
                        "model": OPENAI,
                        "fallback_models": [CLAUDE],
                        "tools": ["delegate"],
                        "settings": {"cache_prompt": False},
                    }
                )
                parent = await handle.result()
                child_id = parent.steps[0].tool_calls[0].child_id
                assert child_id is not None
                child = client.get_workflow_handle(child_id, result_type=AgentResult)
                history = reconstruct([event async for event in child.fetch_history_events()])
                given = history.input
                assert given is not None
                runs.append((parent, await child.result(), given))
    (parent, child, given), (parent2, child2, given2) = runs
    assert parent.status == child.status == "completed"
    assert (given.model, given.fallback_models) == (CLAUDE, None)  # nothing left to fall to
    assert [s.model for s in parent.steps] == [CLAUDE, CLAUDE]
    assert [(s.model, s.failed_models) for s in child.steps] == [(CLAUDE, None)]
    assert parent.usage.cost_usd == pytest.approx(
        cost((10 + 40, 5 + 4), CLAUDE_HAIKU) + cost((20, 3), CLAUDE_HAIKU)
    )
    # The other way round: the sub-agent falls back, its parent keeps its own model.
    assert parent2.status == child2.status == "completed"
    assert (given2.model, given2.fallback_models) == (OPENAI, [CLAUDE])
    assert [s.model for s in parent2.steps] == [OPENAI, OPENAI]
    (step,) = child2.steps
    assert step.model == CLAUDE and step.failed_models is not None
    assert parent2.usage.cost_usd == pytest.approx(
        cost((10 + 30, 5 + 4), GPT_4O_MINI) + cost((20, 3), CLAUDE_HAIKU)
    )
    assert parent2.usage.model_calls == 3
    assert openai.pending == anthropic.pending == 0


async def test_a_fallback_without_a_price_under_a_cost_budget_keeps_the_outage_in_the_log(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The worker refuses the fallback's call (no price, and the run keeps a cost budget):
    the run ends as before, but the model that failed first was asked, and its failure is
    the run's to show (steps, trace, report), as when the fallback's provider fails too.
    The log said nothing of it: only the fallback's missing price, in the reason."""
    unpriced = "anthropic:claude-unpriced"
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(Reply(401, {"error": {"message": "bad key"}}))
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {
                    "prompt": "hi",
                    "model": OPENAI,
                    "fallback_models": [unpriced],
                    "budget": {"max_cost_usd": 1},
                }
            )
            result = await handle.result()
            history = reconstruct([event async for event in handle.fetch_history_events()])
            trace = trace_of(await handle.describe(), history)
    assert (result.status, result.limit) == ("budget_exceeded", "max_cost_usd")
    assert anthropic.requests == []  # refused before it was asked
    (step,) = result.steps
    assert step.model == unpriced
    assert step.error is not None and step.error.startswith(f"cost unknown ({unpriced} has no")
    # The run's `pricing` does not price a fallback: the message points to what does.
    assert "ONWARD_PRICING (or the run's `pricing`, which prices its first model" in step.error
    assert step.failed_models == [
        f"{OPENAI}: openai: 401 Unauthorized: bad key (check OPENAI_API_KEY on the worker)"
    ]
    read = [s.record for s in history.steps]
    assert [(s.step, s.model, s.failed_models, s.error) for s in read] == [
        (s.step, s.model, s.failed_models, s.error) for s in result.steps
    ]
    now = datetime.now(UTC)
    by_model = {m.name: m for m in aggregate([trace], now, now).models}
    assert (by_model[OPENAI].calls, by_model[OPENAI].errors) == (1, 1)


@pytest.mark.parametrize(
    ("fallbacks", "named"),
    [
        (["gpt-4o"], "fallback_models.0: 'gpt-4o' names no provider"),
        (
            [OPENAI],
            f"fallback_models.0: {OPENAI!r} is the model itself; "
            "list only the models to try after it",
        ),
        (
            [CLAUDE, CLAUDE],
            f"fallback_models.1: {CLAUDE!r} is listed twice; each model is tried once",
        ),
        ([f"openai:m{n}" for n in range(5)], "fallback_models"),
    ],
)
def test_fallbacks_are_checked_like_the_model(fallbacks: list[str], named: str) -> None:
    for model in (AgentInput, SessionInput):
        with pytest.raises(ValueError, match=named.replace("(", r"\(")):
            model.model_validate(
                {"prompt": "p", "model": OPENAI, "fallback_models": fallbacks}
                if model is AgentInput
                else {"model": OPENAI, "fallback_models": fallbacks}
            )


def test_sub_agents_and_session_messages_keep_the_fallbacks() -> None:
    parent = AgentInput(prompt="p", model=OPENAI, fallback_models=[CLAUDE])
    same = child_input(parent, DelegateArgs(prompt="sub"), parent.budget, [], None)
    other = child_input(parent, DelegateArgs(prompt="sub", model=CLAUDE), parent.budget, [], None)
    assert same.fallback_models == [CLAUDE]
    assert other.fallback_models is None  # another model: the parent's list was for its own
    session = SessionInput(model=OPENAI, fallback_models=[CLAUDE])
    assert message_input(session, "hi", RunUsage()).fallback_models == [CLAUDE]
    # Left out of inputs without them: a worker of the last release takes them as before.
    assert "fallback_models" not in AgentInput(prompt="p").model_dump(mode="json")


def test_an_empty_list_of_fallbacks_is_left_out_as_none_is() -> None:
    """``"fallback_models": []`` (a client that sends every list it has) asks for no
    fallback: left out of the workflow's input, so a worker of the last release (which
    refuses a field it does not know) takes the run, and the same request retried without
    the field is the same request (its idempotency digest)."""
    for given in (AgentInput(prompt="p", fallback_models=[]), SessionInput(fallback_models=[])):
        assert "fallback_models" not in given.model_dump(mode="json")
    message = message_input(SessionInput(fallback_models=[]), "hi", RunUsage())
    assert "fallback_models" not in message.model_dump(mode="json")
    assert RunRequest(prompt="p", fallback_models=[]).digest() == RunRequest(prompt="p").digest()


async def test_the_cli_names_the_flag_of_a_bad_fallback() -> None:
    done = await run_onward(
        "run",
        "hi",
        "--model",
        OPENAI,
        "--fallback-model",
        "claude-3-5-haiku",
        env={"TEMPORAL_ADDRESS": "127.0.0.1:9"},  # checked before connecting: no server
    )
    assert done.code == 2
    assert done.stderr.strip() == (
        "onward: invalid input: fallback_models.0 (--fallback-model): 'claude-3-5-haiku' "
        "names no provider; use 'anthropic:claude-3-5-haiku'"
    )


async def test_onward_schedule_create_takes_fallback_models_as_onward_run_does(
    client: Client, tmp_path: Path, search_attribute_names: list[str], address: str
) -> None:
    """`create` takes the options of `onward run`; --fallback-model was not one of them,
    so the schedule check's rule (a first model without its key is no problem when the
    runs go on with their fallbacks) could not be used from the command line."""
    script = tmp_path / "script.json"
    script.write_text('[{"text": "good morning"}]')
    schedule_id = f"fallback-{uuid.uuid4().hex[:8]}"
    providers = providers_from_env({})  # no OPENAI_API_KEY
    try:
        async with running_worker(
            client, tmp_path / "ws", search_attribute_names, providers=providers
        ) as keyless:
            onward = OnwardClient(client, task_queue=keyless.task_queue)
            await eventually(onward.has_worker)
            env = {"TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": keyless.task_queue}
            created = await run_onward(
                "schedule", "create", "--cron", YEARLY, "--prompt", "greet", "--id", schedule_id,
                "--model", OPENAI, "--fallback-model", "scripted", "--script", str(script),
                "--json", env=env,
            )  # fmt: skip
            assert created.code == 0, created.stderr
            assert created.json() == {"schedule_id": schedule_id, "checked": True}
            try:
                row = await onward.schedule(schedule_id)
                assert row.input is not None and row.input.fallback_models == ["scripted"]
                shown = await run_onward("schedule", "show", schedule_id, env=env)
                assert "  fallback models: scripted\n" in shown.stdout
                await onward.schedule_trigger(schedule_id)
                result = await onward.result(await finished_run(onward, schedule_id))
            finally:
                await onward.schedule_delete(schedule_id)
    finally:
        await close_providers(providers)
    assert (result.status, result.output) == ("completed", "good morning")
    (step,) = result.steps
    assert step.model == "scripted" and step.failed_models is not None


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (
            ["chat", "--fallback-model", "gpt-4o"],
            "onward: invalid input: fallback_models.0 (--fallback-model): 'gpt-4o' names no "
            "provider; use 'openai:gpt-4o'",
        ),
        (
            ["chat", "--output-schema", "no-such-schema.json"],
            "onward: --output-schema no-such-schema.json: cannot read it (No such file or "
            "directory)",
        ),
        (
            ["extend", "some-run", "--max-tokens", "-5"],
            "onward: invalid budget extension: max_tokens: Input should be greater than or "
            "equal to 0 (got -5)",
        ),
    ],
)
async def test_chat_and_extend_check_their_flags_before_connecting(
    command: list[str], said: str
) -> None:
    # As run and start do: the mistake, not "cannot reach Temporal", with no server.
    done = await run_onward(*command, env={"TEMPORAL_ADDRESS": "127.0.0.1:9"})
    assert (done.code, done.stderr.strip()) == (2, said)


async def test_a_provider_without_its_key_falls_back_to_the_scripted_model(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    script = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"text": "42"},
    ]
    async with provider_worker(client, tmp_path, search_attribute_names, {}) as worker:
        result = await worker.run(
            {"prompt": "hi", "model": OPENAI, "fallback_models": ["scripted"], "script": script}
        )
    assert result.status == "completed", result.reason
    assert result.output == "42"
    assert [step.model for step in result.steps] == ["scripted", "scripted"]
    (failed,) = result.steps[0].failed_models or []
    assert failed.startswith(f"{OPENAI}: openai: OPENAI_API_KEY is not set on the worker")
    assert result.steps[0].tool_calls[0].result == "42"


def test_a_problem_a_check_of_several_fields_names_is_located_at_that_field() -> None:
    assert named_problem(("body",), "Value error, fallback_models.1: 'x' is tried") == (
        ("body", "fallback_models", 1),
        "'x' is tried",
    )
    assert named_problem((), "Value error, script: only the scripted model takes a script") == (
        ("script",),
        "only the scripted model takes a script",
    )
    # A field's own problem, or a message that names no field, stays as it is.
    assert named_problem(("prompt",), "Value error, x: y") == (("prompt",), "x: y")
    assert named_problem((), "Value error, give one limit: max_tokens") == (
        (),
        "give one limit: max_tokens",
    )
    # Only pydantic's ValueError problems: Onward's own name their place themselves.
    assert named_problem(("body",), "extend_budget: name a limit") == (
        ("body",),
        "extend_budget: name a limit",
    )


async def test_a_compaction_the_provider_fails_is_asked_of_the_fallback(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    long_sum = {"expression": "+".join(["1"] * 300)}
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            *(
                openai_completion("adding", [(f"call_{n}", "calculator", long_sum)])
                for n in range(3)
            ),
            Reply(401, {"error": {"message": "key revoked"}}),  # the summary call
        )
        anthropic.script(
            anthropic_message("the sums so far were 300 each"),  # the summary
            anthropic_message("300."),
        )
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {
                    "prompt": "Add up",
                    "model": OPENAI,
                    "fallback_models": [CLAUDE],
                    "tools": ["calculator"],
                    "context": {"max_tokens": 400, "keep_last_turns": 1},
                }
            )
            result = await handle.result()
            history = reconstruct([event async for event in handle.fetch_history_events()])
    assert result.status == "completed", result.reason
    assert result.output == "300."
    read = [step.record for step in history.steps]
    assert [(s.step, s.model, s.failed_models) for s in read] == [
        (s.step, s.model, s.failed_models) for s in result.steps
    ]
    assert [step.compaction for step in result.steps] == [False, False, False, True, False]
    summary = result.steps[3]
    assert summary.model == CLAUDE and summary.text == "the sums so far were 300 each"
    assert summary.failed_models == [f"{OPENAI}: openai: 401 Unauthorized: key revoked "
                                     "(check OPENAI_API_KEY on the worker)"]  # fmt: skip
    assert result.steps[4].model == CLAUDE and result.steps[4].failed_models is None


async def test_a_scripted_fallback_plays_its_script_from_the_first_turn(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The script is the scripted model's turns: the steps another model answered
    before it took over played none of them."""
    busy = Reply(503, {"error": {"message": "upstream overloaded"}})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            openai_completion("Adding.", [("call_1", "calculator", {"expression": "2 + 2"})]),
            busy,
            busy,
        )
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            result = await worker.run(
                {
                    "prompt": "Compute 2+2",
                    "model": OPENAI,
                    "fallback_models": ["scripted"],
                    "script": [{"text": "4, from the script"}],
                    "tools": ["calculator"],
                }
            )
    assert result.status == "completed", result.reason
    assert [step.model for step in result.steps] == [OPENAI, "scripted"]
    assert result.output == "4, from the script"
    assert result.script_played == 1


async def test_a_run_paused_while_its_model_fails_calls_no_fallback_until_resumed(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Paused, no new model call starts until resume: the fallback's call is a new one."""
    unauthorized = Reply(401, {"error": {"message": "bad key"}}, delay_s=1.5)
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(unauthorized)
        anthropic.script(anthropic_message("hello"))
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {"prompt": "hi", "model": OPENAI, "fallback_models": [CLAUDE]}
            )

            async def asked() -> bool:
                return len(openai.requests) == 1

            await eventually(asked)
            await handle.signal(AgentWorkflow.pause)

            async def paused() -> bool:
                return (await handle.query(AgentWorkflow.status)).state == "paused"

            await eventually(paused)
            await asyncio.sleep(1)
            assert anthropic.requests == []
            await handle.signal(AgentWorkflow.resume)
            result = await handle.result()
    assert result.status == "completed", result.reason
    assert result.output == "hello"
    (step,) = result.steps
    assert step.model == CLAUDE and step.failed_models is not None


async def test_a_run_cancelled_during_the_fallbacks_call_reads_back_as_it_logged(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """An interrupted call leaves no step, the failed call before it neither: the run went
    on from it. The history reader says the same as the run's own step log."""
    unauthorized = Reply(401, {"error": {"message": "bad key"}})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(unauthorized)
        anthropic.script(Reply(json=anthropic_message("late"), delay_s=30))
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {"prompt": "hi", "model": OPENAI, "fallback_models": [CLAUDE]}
            )

            async def asked() -> bool:
                return len(anthropic.requests) == 1

            await eventually(asked)
            await handle.signal(AgentWorkflow.cancel, CancelRequest(reason="enough"))
            result = await handle.result()
            history = reconstruct([event async for event in handle.fetch_history_events()])
    assert result.status == "cancelled"
    assert result.steps == []
    assert [step.record for step in history.steps] == []


async def test_a_fallback_does_not_compact_in_the_middle_of_the_step(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A steer joins the conversation after the step's compaction check; the fallback's
    call, sent the same conversation, must not summarise it then: the summary would take
    the step's number from the failed call, and the answer become a step later (the
    history reader reads a failed step there). It waits for the next step's check."""
    unauthorized = Reply(401, {"error": {"message": "bad key"}})
    adding = openai_completion("Adding.", [("call_1", "calculator", {"expression": "2 + 2"})])
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            Reply(json=adding, delay_s=1.5),  # steered meanwhile: added before step 2
            unauthorized,
        )
        anthropic.script(anthropic_message("done"))
        env = environ(openai, anthropic)
        async with provider_worker(client, tmp_path, search_attribute_names, env) as worker:
            handle = await worker.start(
                {
                    "prompt": "hi",
                    "model": OPENAI,
                    "fallback_models": [CLAUDE],
                    "tools": ["calculator"],
                    "context": {"max_tokens": 100, "keep_last_turns": 1},
                }
            )

            async def asked() -> bool:
                return len(openai.requests) == 1

            await eventually(asked)
            await handle.signal(AgentWorkflow.steer, SteerRequest(message="word " * 400))
            result = await handle.result()
            history = reconstruct([event async for event in handle.fetch_history_events()])
    assert result.status == "completed", result.reason
    first, step = result.steps
    assert (first.model, step.step, step.model, step.compaction) == (OPENAI, 2, CLAUDE, False)
    assert step.failed_models is not None and step.steering == ["word " * 400]
    read = [s.record for s in history.steps]
    assert [(s.step, s.model, s.failed_models) for s in read] == [
        (s.step, s.model, s.failed_models) for s in result.steps
    ]


async def test_a_fallback_compacts_at_its_own_context_window(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A run without `context` compacts at 80% of its model's window: after a fallback,
    of the fallback's window (here far smaller), not the failed model's (which would
    never have compacted these five turns)."""
    pricing = tmp_path / "pricing.json"
    price = {"input_per_mtok": 1, "output_per_mtok": 1}
    pricing.write_text(
        json.dumps(
            {
                OPENAI: {**price, "context_window": 1_000_000},
                CLAUDE: {**price, "context_window": 500},
            }
        )
    )
    long_sum = {"expression": "+".join(["1"] * 300)}
    unauthorized = Reply(401, {"error": {"message": "bad key"}})
    async with FakeProvider(OPENAI_PATH) as openai, FakeProvider(ANTHROPIC_PATH) as anthropic:
        openai.script(
            *(openai_completion("add", [(f"call_{n}", "calculator", long_sum)]) for n in range(4)),
            unauthorized,
        )
        anthropic.script(
            anthropic_message("adding", [("toolu_5", "calculator", long_sum)]),
            anthropic_message("the sums so far were 300 each"),  # the summary
            anthropic_message("1500."),
        )
        env = environ(openai, anthropic)
        settings = WorkerSettings(
            task_queue=f"tq-{uuid.uuid4().hex[:12]}",
            workspace=tmp_path / "ws",
            pricing_files=(pricing,),
        )
        providers = providers_from_env(env)
        try:
            async with build_worker(
                client,
                settings,
                providers=providers,
                model_max_attempts=2,
                search_attribute_names=search_attribute_names,
            ):
                result = await RunningWorker(client, settings.task_queue, tmp_path / "ws").run(
                    {
                        "prompt": "Add up",
                        "model": OPENAI,
                        "fallback_models": [CLAUDE],
                        "tools": ["calculator"],
                    }
                )
        finally:
            await close_providers(providers)
    assert result.status == "completed", result.reason
    assert result.output == "1500."
    assert [(s.model, s.compaction) for s in result.steps] == [
        *[(OPENAI, False)] * 4,
        (CLAUDE, False),  # sent the whole conversation: the step was the failed model's
        (CLAUDE, True),
        (CLAUDE, False),
    ]
