"""`onward export` writes a run whole; `onward replay` replays runs on this installation."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from provider_servers import OPENAI_PATH, FakeProvider, openai_completion
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_cli import Onward
from test_encrypted_runs import key
from test_providers_e2e import GPT_4O_MINI, KEY, cost, provider_worker

from conftest import RunningWorker, run_onward, running_worker
from onward.client import OnwardClient
from onward.connection import data_converter
from onward.contracts import AgentInput, Message, StepRecord
from onward.errors import InvalidInput
from onward.replay import _logged_errors, fork_point, histories_in_file, replay_histories

HISTORIES = Path(__file__).parent / "histories"

CALCULATING: list[dict[str, Any]] = [
    {"text": "adding", "tool_calls": [{"name": "calculator", "arguments": {"expression": "2+3"}}]},
    {
        "text": "doubling",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "5*2"}}],
    },
    {"text": "it is 10"},
]


@pytest.fixture
def onward(address: str, worker: RunningWorker, tmp_path: Path) -> Onward:
    return Onward(address, worker.task_queue, tmp_path / "home")


async def finished_run(worker: RunningWorker, **fields: Any) -> str:
    handle = await worker.start(
        AgentInput.model_validate({"prompt": "what is (2+3)*2?", "script": CALCULATING, **fields})
    )
    result = await handle.result()
    assert result.status == "completed", result
    return handle.id


async def test_an_export_holds_the_run_whole(
    worker: RunningWorker, onward: Onward, tmp_path: Path
) -> None:
    run_id = await finished_run(worker)
    out = tmp_path / "run.json"
    done = await onward("export", run_id, "--output", str(out))
    assert done.code == 0, done.stderr
    assert f"exported {run_id} to {out}: 3 steps, 6 messages, the histories of 1 run" in (
        done.stdout
    )
    exported = json.loads(out.read_text())
    assert exported["onward_export"] == 1
    assert exported["workflow_id"] == run_id
    assert exported["workflow_type"] == "AgentWorkflow"
    assert exported["status"] == "completed"
    assert exported["input"]["prompt"] == "what is (2+3)*2?"
    assert exported["result"]["output"] == "it is 10"
    assert [step["text"] for step in exported["steps"]] == ["adding", "doubling", "it is 10"]
    roles = [message["role"] for message in exported["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert exported["messages"][2]["content"] == "5"  # the tool's result, as the model saw it
    [run] = exported["histories"]
    events = run["history"]["events"]
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    summary = await onward.ok_json("export", run_id, "--output", str(tmp_path / "again.json"))
    assert summary == {
        "workflow_id": run_id,
        "output": str(tmp_path / "again.json"),
        "steps": 3,
        "messages": 6,
        "runs": 1,
    }
    # Without --output: the same document on stdout.
    printed = await onward("export", run_id)
    assert printed.code == 0, printed.stderr
    assert json.loads(printed.stdout) == exported


async def test_an_unknown_run_is_not_exported(onward: Onward) -> None:
    done = await onward("export", "no-such-run")
    assert done.code == 2
    assert "no-such-run" in done.stderr


async def test_runs_replay_by_id_from_an_export_and_as_recorded_histories(
    worker: RunningWorker, onward: Onward, tmp_path: Path
) -> None:
    chained = await finished_run(worker, continue_as_new_after=1)  # three runs of one id
    plain = await finished_run(worker)
    done = await onward("replay", chained, plain)
    assert done.code == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith(f"replays      {chained} · run ") for line in lines) == 3
    assert sum(line.startswith(f"replays      {plain} · run ") for line in lines) == 1
    assert lines[-1] == "all 4 runs replay: workers of this version go on with them"

    exported = tmp_path / "chained.json"
    assert (await onward("export", chained, "-o", str(exported))).code == 0
    recorded = HISTORIES / "tools_and_control.json"
    from_files = await onward("replay", "--file", str(exported), "--file", str(recorded), "--json")
    assert from_files.code == 0, from_files.stderr
    outcomes = from_files.json()
    assert [o["workflow_id"] for o in outcomes] == [chained] * 3 + ["tools_and_control"]
    assert all(o["failure"] is None and o["events"] > 5 for o in outcomes)

    # --recent takes the runs `onward list` shows first. The namespace is the whole
    # test session's (runs of other tests start and end meanwhile, some encrypted, some
    # left running): asked while the list stays the same.
    for _ in range(5):
        listed = [row["workflow_id"] for row in await onward.ok_json("list", "--limit", "2")]
        recent = await onward("replay", "--recent", "2", "--json")
        assert recent.code in (0, 1), recent.stderr
        again = [row["workflow_id"] for row in await onward.ok_json("list", "--limit", "2")]
        if listed == again:
            assert list(dict.fromkeys(o["workflow_id"] for o in recent.json())) == listed
            break
    else:
        pytest.fail("the list of runs did not stay the same for one replay")


async def test_a_history_the_workflow_would_decide_otherwise_on_does_not_replay(
    worker: RunningWorker, onward: Onward, tmp_path: Path
) -> None:
    """What a workflow change that is not guarded does to the runs in flight: here the
    history says the run asked for another activity than the workflow asks for."""
    run_id = await finished_run(worker)
    exported = tmp_path / "run.json"
    assert (await onward("export", run_id, "-o", str(exported))).code == 0
    document = json.loads(exported.read_text())
    events = document["histories"][0]["history"]["events"]
    scheduled = [
        event["activityTaskScheduledEventAttributes"]
        for event in events
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]
    scheduled[0]["activityType"]["name"] = "call_model_v0"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))

    done = await onward("replay", "--file", str(tampered), "--file", str(exported))
    assert done.code == 1, done.stdout + done.stderr
    failed, passed, summary = done.stdout.splitlines()
    assert failed.startswith(f"DOES NOT     {run_id} · run ")
    assert "call_model_v0" in failed  # the error names what differs
    assert passed.startswith(f"replays      {run_id} · run ")
    assert summary.startswith("1 of 2 runs would not go on on a worker of this version")


async def test_replay_says_what_to_name_and_refuses_an_unreadable_file(
    onward: Onward, tmp_path: Path
) -> None:
    nothing = await onward("replay")
    assert nothing.code == 2
    assert "name runs to replay: their IDs, --file FILE, --recent N or --running" in (
        nothing.stderr
    )
    for count in ("0", "-1"):
        none = await onward("replay", "--recent", count)
        assert none.code == 2
        assert f"--recent: {count} is not a number of runs (1 or more)" in none.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    refused = await onward("replay", "--file", str(bad))
    assert refused.code == 2
    assert "is neither an `onward export` nor a Temporal history" in refused.stderr
    with pytest.raises(InvalidInput, match="cannot read"):
        histories_in_file(tmp_path / "missing.json")


async def test_a_history_of_another_workflow_is_said_not_to_be_onwards(client: Client) -> None:
    recorded = histories_in_file(HISTORIES / "tools_and_control.json")
    events = recorded[0].events
    events[0].workflow_execution_started_event_attributes.workflow_type.name = "Other"
    [outcome] = await replay_histories(recorded)
    assert outcome.failure == "not a run of Onward's (workflow type Other)"


async def test_a_run_this_process_cannot_read_is_unreadable_not_a_change(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Without the workers' keys or payload store, replay cannot answer: it says which
    setting is missing, not that the workflow decides otherwise, and prints no traceback."""
    keys = f"k1:{key()}"
    payloads = tmp_path / "payloads"
    settings = {"ONWARD_ENCRYPTION_KEYS": keys, "ONWARD_PAYLOADS": str(payloads)}
    config = env.client.config()
    config["data_converter"] = data_converter({**settings, "ONWARD_PAYLOAD_THRESHOLD": "1024"})
    keyed = Client(**config)
    async with running_worker(keyed, tmp_path / "ws", search_attribute_names) as worker:
        run_id = await finished_run(worker, prompt="what is (2+3)*2? " + "x" * 2000)
    assert list(payloads.rglob("*"))  # the prompt went there, out of the history
    where = {"TEMPORAL_ADDRESS": env.client.service_client.config.target_host}
    exported = tmp_path / "run.json"
    done = await run_onward("export", run_id, "-o", str(exported), env=where | settings)
    assert done.code == 0, done.stderr
    document = json.loads(exported.read_text())  # in the clear, but for the histories
    assert document["input"]["prompt"].startswith("what is (2+3)*2? xxx")
    assert document["messages"][2]["content"] == "5"

    replayed = await run_onward("replay", run_id, "--file", str(exported), env=where | settings)
    assert replayed.code == 0, replayed.stdout + replayed.stderr
    unkeyed = await run_onward(
        "replay", run_id, "--file", str(exported), env=where | {"ONWARD_PAYLOADS": str(payloads)}
    )
    assert unkeyed.code == 1
    assert "Traceback" not in unkeyed.stderr, unkeyed.stderr
    lines = unkeyed.stdout.splitlines()
    assert [line[:13] for line in lines[:2]] == ["UNREADABLE   "] * 2
    assert all("set ONWARD_ENCRYPTION_KEYS on this process" in line for line in lines[:2]), lines
    assert lines[2].startswith("2 of 2 runs could not be read here")
    assert "workflow.patched" not in unkeyed.stdout
    elsewhere = settings | {"ONWARD_PAYLOADS": str(tmp_path / "elsewhere")}
    moved = await run_onward("replay", "--file", str(exported), "--json", env=where | elsewhere)
    assert moved.code == 1 and "Traceback" not in moved.stderr, moved.stderr
    [outcome] = moved.json()
    assert outcome["unreadable"] is True
    assert "cannot read its payloads here: payload " in outcome["failure"]
    assert "ONWARD_PAYLOADS" in outcome["failure"]


def test_a_replay_keeps_only_its_own_runs_errors_from_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker in the same process goes on logging its runs' failed tasks meanwhile."""
    sdk = logging.getLogger("temporalio.worker._workflow")
    with caplog.at_level(logging.ERROR), _logged_errors("run-1") as errors:
        for run in ("run-1", "run-2"):
            try:
                raise ValueError(f"broken {run}")
            except ValueError:
                sdk.exception("Failed handling activation on workflow with run ID %s", run)
    assert [str(error) for error in errors] == ["broken run-1"]
    assert [record.getMessage()[-5:] for record in caplog.records] == ["run-2"]


async def test_the_python_client_exports_and_replays(client: Client, worker: RunningWorker) -> None:
    run_id = await finished_run(worker)
    onward = OnwardClient(client, task_queue=worker.task_queue)
    exported = await onward.export(run_id)
    assert exported.result is not None and exported.result["output"] == "it is 10"
    assert exported.messages_missing is None
    [replayed] = await onward.replay(run_id)
    assert replayed.failure is None
    assert replayed.workflow_type == "AgentWorkflow"


# -- fork ---------------------------------------------------------------------------------

TRIPLING: list[dict[str, Any]] = [
    {
        "text": "tripling",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "5*3"}}],
    },
    {"text": "it is 15"},
]


async def test_a_fork_goes_on_from_the_end_of_a_step_without_calling_anything_again(
    client: Client, worker: RunningWorker, onward: Onward, tmp_path: Path
) -> None:
    run_id = await finished_run(worker)
    script = tmp_path / "tripling.json"
    script.write_text(json.dumps(TRIPLING))
    forked = await onward.ok_json(
        "fork", run_id, "now triple it instead", "--at-step", "1", "--script", str(script)
    )
    assert forked["forked_from"] == run_id and forked["at_step"] == 1
    new_id = forked["workflow_id"]
    result = await onward.ok_json("result", new_id)
    assert result["output"] == "it is 15"
    # Its own steps only: the one taken over was not asked of the model again.
    assert [step["text"] for step in result["steps"]] == ["tripling", "it is 15"]
    assert [call["name"] for s in result["steps"] for call in s["tool_calls"]] == ["calculator"]
    exported = OnwardClient(client, task_queue=worker.task_queue)
    messages = (await exported.export(new_id)).messages
    assert messages is not None
    assert [(m.role, m.content) for m in messages[:4]] == [
        ("user", "what is (2+3)*2?"),
        ("assistant", "adding"),
        ("tool", "5"),  # step 1's result, taken over, not computed again
        ("user", "now triple it instead"),
    ]
    assert [m.role for m in messages[4:]] == ["assistant", "tool", "assistant"]
    memo = await exported.memo(new_id)
    assert memo["forked_from"] == run_id and memo["forked_at_step"] == 1


async def test_a_fork_of_a_scripted_run_plays_the_rest_of_its_script(
    worker: RunningWorker, onward: Onward
) -> None:
    run_id = await finished_run(worker)
    forked = await onward.ok_json("fork", run_id, "go on", "--at-step", "2", "--max-steps", "5")
    result = await onward.ok_json("result", forked["workflow_id"])
    assert [step["text"] for step in result["steps"]] == ["it is 10"]
    assert result["usage"]["steps"] == 1


async def test_a_scripted_run_forks_to_another_model(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """The rest of the script is the scripted model's, and a run's price override is its
    model's: a fork to a provider's model leaves both behind (a script is refused for
    any other model; the override would price the new model's tokens)."""
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(openai_completion("it is 15"))
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            onward = Onward(address, worker.task_queue, tmp_path / "home")
            price = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
            run_id = await finished_run(worker, pricing=price)
            forked = await onward(
                "fork", run_id, "triple it", "--at-step", "1", "--model", "openai:gpt-4o-mini"
            )
            assert forked.code == 0, forked.stderr
            result = await onward.ok_json("result", forked.stdout.strip())
    assert result["output"] == "it is 15"
    assert result["usage"]["cost_usd"] == pytest.approx(cost((10, 5), GPT_4O_MINI))
    [request] = server.requests
    sent = [(message["role"], message.get("content")) for message in request.json["messages"]]
    assert sent == [
        ("user", "what is (2+3)*2?"),
        ("assistant", "adding"),
        ("tool", "5"),
        ("user", "triple it"),
    ]


async def test_a_forks_calls_do_not_repeat_the_ids_of_the_calls_it_took_over(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A provider that gives no call ids: the run names its step's calls call_1_1..., and
    a fork numbers its steps from 1 again. The conversation it sends must still match
    each result to one call."""
    async with FakeProvider(OPENAI_PATH) as server:
        server.script(
            openai_completion("adding", [("", "calculator", {"expression": "2+3"})]),
            openai_completion("it is 5"),
            openai_completion("adding again", [("", "calculator", {"expression": "5+4"})]),
            openai_completion("it is 9"),
        )
        environ = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": KEY}
        async with provider_worker(client, tmp_path, search_attribute_names, environ) as worker:
            onward = Onward(address, worker.task_queue, tmp_path / "home")
            handle = await worker.start(
                {"prompt": "2+3?", "model": "openai:gpt-4o-mini", "tools": ["calculator"]}
            )
            assert (await handle.result()).status == "completed"
            forked = await onward.ok_json("fork", handle.id, "and plus 4?", "--at-step", "1")
            result = await onward.ok_json("result", forked["workflow_id"])
    assert result["output"] == "it is 9"
    sent = server.requests[-1].json["messages"]
    assert [message["role"] for message in sent] == [
        "user",
        "assistant",
        "tool",
        "user",
        "assistant",
        "tool",
    ]
    calls = [call["id"] for message in sent for call in message.get("tool_calls", [])]
    assert len(set(calls)) == 2, calls
    assert [sent[2]["tool_call_id"], sent[5]["tool_call_id"]] == calls
    assert [sent[2]["content"], sent[5]["content"]] == ["5", "9"]


async def test_a_fork_after_a_summary_plays_the_script_from_the_next_unplayed_turn(
    worker: RunningWorker, onward: Onward
) -> None:
    """A summary of older turns is a step that plays no turn of the script: the fork
    goes on with the turn after the last one played, not the one at the step count."""
    turns = [
        {
            "text": f"turn {n} " + "words " * 40,
            "tool_calls": [{"name": "calculator", "arguments": {"expression": f"{n}+{n}"}}],
        }
        for n in range(1, 6)
    ]
    run_id = await finished_run(
        worker,
        script=[*turns, {"text": "the end"}],
        context={"max_tokens": 200, "keep_last_turns": 1},
    )
    steps = await onward.ok_json("steps", run_id)
    played = [step["text"].split(" words")[0] for step in steps[:5] if not step["compaction"]]
    assert played == ["turn 1", "turn 2", "turn 3", "turn 4"]  # and a summary among them
    forked = await onward.ok_json("fork", run_id, "go on", "--at-step", "5")
    result = await onward.ok_json("result", forked["workflow_id"])
    replies = [step for step in result["steps"] if not step["compaction"]]
    assert [step["text"].split(" words")[0] for step in replies] == ["turn 5", "the end"]


async def test_a_fork_at_a_step_the_run_did_not_finish_is_refused(
    worker: RunningWorker, onward: Onward
) -> None:
    run_id = await finished_run(worker)
    done = await onward("fork", run_id, "again", "--at-step", "5")
    assert done.code == 2
    assert "at_step: 5 is not a finished step of the run (it has 3 finished steps)" in done.stderr
    zero = await onward("fork", run_id, "again", "--at-step", "0")
    assert zero.code == 2
    assert "at_step: 0 is not a finished step" in zero.stderr


def test_the_fork_point_counts_replies_not_summaries_or_failed_calls() -> None:
    def message(role: str, content: str = "") -> Message:
        return Message(role=role, content=content)

    def step(number: int, **fields: Any) -> StepRecord:
        return StepRecord(step=number, started_at=datetime.now(UTC), **fields)

    earlier = [message("user", "hi"), message("assistant", "hello")]  # a session's, say
    own = [
        message("user", "task"),
        message("assistant", "one"),
        message("tool", "r1"),
        message("assistant", "two"),
        message("tool", "r2a"),
        message("tool", "r2b"),
        message("user", "a steer before step 5"),
        message("assistant", "three"),
    ]
    messages = earlier + own
    steps = [
        step(1),
        step(2, compaction=True),  # a summary: no message of its own
        step(3, error="the provider failed"),  # no reply
        step(4),
        step(5),
    ]
    assert fork_point(messages, 2, steps, 1) == 5  # through "one" and its result
    assert fork_point(messages, 2, steps, 2) == 5
    assert fork_point(messages, 2, steps, 4) == 8  # through "two" and both results
    assert fork_point(messages, 2, steps, 5) == 10
    with pytest.raises(InvalidInput, match="fewer than the run's first 5 steps"):
        fork_point(messages[:8], 2, steps, 5)
    with pytest.raises(InvalidInput, match="no reply to go on from"):
        fork_point(messages, 2, [step(1, error="failed")], 1)


async def test_replay_running_takes_every_run_and_session_in_flight(
    client: Client, worker: RunningWorker, onward: Onward
) -> None:
    onward_client = OnwardClient(client, task_queue=worker.task_queue)
    slow = await worker.start(
        AgentInput.model_validate({"prompt": "wait", "script": [{"text": "late", "delay_s": 30}]})
    )
    session = await onward_client.open_session({})
    ended = await finished_run(worker)
    try:
        in_flight = await onward_client.in_flight()
        assert {slow.id, session} <= set(in_flight)
        assert ended not in in_flight
        done = await onward("replay", "--running", "--json")
        outcomes = done.json()
        replayed = {o["workflow_id"]: o for o in outcomes}
        assert {slow.id, session} <= set(replayed)
        assert replayed[session]["workflow_type"] == "SessionWorkflow"
        assert replayed[slow.id]["failure"] is None and replayed[session]["failure"] is None
        # Other tests' runs still in flight on this server may be ones this process
        # cannot read (encrypted, say): exit 1 exactly when one of them does not replay.
        assert done.code == (0 if all(o["failure"] is None for o in outcomes) else 1)
    finally:
        await slow.cancel()
        await onward_client.close_session(session)
