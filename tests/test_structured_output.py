"""Structured output: a run with ``output_schema`` answers by calling ``final_answer``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError

from conftest import RunningWorker, eventually
from onward.client import OnwardClient
from onward.contracts import AgentInput, SessionMessage, SessionReply, StepRecord
from onward.errors import InvalidInput
from onward.final_answer import answer_problem
from onward.sessions import turn_structured_output
from onward.starter.history import reconstruct

CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population_m": {"type": "number", "minimum": 0},
    },
    "required": ["city", "population_m"],
    "additionalProperties": False,
}


def calc(expression: str) -> dict[str, Any]:
    return {"name": "calculator", "arguments": {"expression": expression}}


def answer(**arguments: Any) -> dict[str, Any]:
    return {"name": "final_answer", "arguments": arguments}


async def test_the_run_ends_with_the_first_answer_that_matches(worker: RunningWorker) -> None:
    result = await worker.run(
        {
            "prompt": "Which city is the largest?",
            "tools": ["calculator"],
            "output_schema": CITY,
            "script": [
                {"text": "Adding up.", "tool_calls": [calc("30 + 7")]},
                {"text": "", "tool_calls": [answer(city="Tokyo", population_m=-37)]},
                {"text": "Done.", "tool_calls": [answer(city="Tokyo", population_m=37), calc("1")]},
                {"text": "never asked"},
            ],
        }
    )

    assert result.status == "completed", result.reason
    assert result.structured_output == {"city": "Tokyo", "population_m": 37}
    assert json.loads(result.output or "") == result.structured_output
    # A mismatch is the model's tool error to correct; the run goes on.
    (wrong,) = result.steps[1].tool_calls
    assert wrong.status == "error"
    assert wrong.error == (
        "final_answer: the answer does not match the schema: population_m: -37 is less "
        "than the minimum of 0. Call final_answer again with arguments that match it."
    )
    # The answer ends the run: a call beside it is not run.
    taken, beside = result.steps[2].tool_calls
    assert (taken.status, beside.status) == ("ok", "not_run")
    assert result.usage.model_calls == 3 and result.script_played == 3


async def test_an_answer_whose_arguments_were_not_json_is_not_taken(
    worker: RunningWorker,
) -> None:
    # A provider hands arguments it cannot parse (cut off at the output token limit)
    # on as {"_raw": text}. final_answer checked that object against the schema: the
    # model read "'city' is a required property", and a schema that requires nothing
    # took {"_raw": ...} as the run's answer.
    cut = {"_raw": '{"city": "To'}
    loose = {"type": "object", "properties": {"city": {"type": "string"}}}
    result = await worker.run(
        {
            "prompt": "Which city is the largest?",
            "output_schema": loose,
            "script": [
                {"text": "", "tool_calls": [answer(**cut)]},
                {"text": "", "tool_calls": [answer(city="Tokyo")]},
            ],
        }
    )

    assert result.status == "completed", result.reason
    assert result.structured_output == {"city": "Tokyo"}
    (wrong,) = result.steps[0].tool_calls
    assert wrong.status == "error"
    assert wrong.error == (
        'final_answer: the arguments were not valid JSON: \'{"city": "To\'; '
        "call final_answer again with one JSON object that matches its schema."
    )
    assert answer_problem(CITY, cut) == wrong.error


async def test_a_text_answer_is_met_with_a_reminder_then_fails_the_run(
    worker: RunningWorker,
) -> None:
    reminded = await worker.run(
        {
            "prompt": "Which city?",
            "output_schema": CITY,
            "script": [
                {"text": "Tokyo."},
                {"text": "", "tool_calls": [answer(city="Tokyo", population_m=37)]},
            ],
        }
    )
    assert reminded.status == "completed" and reminded.structured_output is not None
    assert [step.text for step in reminded.steps] == ["Tokyo.", ""]

    chatty = await worker.run(
        {"prompt": "Which city?", "output_schema": CITY, "script": [{"text": "Tokyo."}] * 4}
    )
    assert chatty.status == "failed"
    assert chatty.reason == (
        "the model answered in plain text 3 times, not by calling final_answer as "
        "output_schema asks"
    )
    assert chatty.output == "Tokyo." and chatty.structured_output is None
    assert chatty.usage.model_calls == 3


def test_output_schema_must_be_an_object_schema() -> None:
    def of(**properties: Any) -> dict[str, Any]:
        return {"type": "object", "properties": properties, "$defs": {"n": {"type": "number"}}}

    for schema, problem in [
        ({"type": "string"}, 'the schema needs "type": "object"'),
        (of(x={"type": "strnig"}), "not a valid JSON Schema"),
        # Nothing the workflow could stall on, or would have to fetch.
        (of(x={"type": "string", "pattern": "^(a+)+$"}), "/properties/x/pattern: pattern is"),
        (of(x={"$ref": "https://example.com/s.json"}), "does not resolve within the schema"),
        (of(x={"$ref": "#/$defs/missing"}), "'#/\\$defs/missing' does not resolve"),
        (of(x={"$id": "https://example.com/x"}), "\\$id is not supported"),
    ]:
        with pytest.raises(ValueError, match=problem):
            AgentInput(prompt="p", output_schema=schema)
    # Nesting the validator would recurse through until a RecursionError: in the
    # workflow, a task failed again and again, never the run.
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(100):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        AgentInput(prompt="p", output_schema=deep)
    answer: dict[str, Any] = {}
    for _ in range(500):
        answer = {"a": answer}
    itself = {"type": "object", "properties": {"a": {"$ref": "#"}}}
    assert answer_problem(itself, answer) == (
        "final_answer: the answer nests deeper than 64 levels"
    )
    local = of(x={"$ref": "#/$defs/n"}, all={"$ref": "#"})
    assert AgentInput(prompt="p", output_schema=local).output_schema == local
    assert answer_problem(local, {"x": "one"}) is not None
    with pytest.raises(ValueError, match="final_answer is the tool output_schema adds"):
        AgentInput(prompt="p", output_schema=CITY, tools=["final_answer"])
    # Approving it would approve nothing: a matching answer ends the run at once.
    with pytest.raises(ValueError, match="approve_tools: final_answer is not approved"):
        AgentInput(prompt="p", output_schema=CITY, approve_tools=["final_answer"])
    assert answer_problem(CITY, {"city": "Oslo"}) == (
        "final_answer: the answer does not match the schema: (the arguments): "
        "'population_m' is a required property. Call final_answer again with arguments "
        "that match it."
    )


def test_only_keywords_are_refused_and_references_point_to_schemas() -> None:
    # Properties may be named as keywords are: their values are schemas, not patterns.
    named = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string"},
            "patternProperties": {"type": "object"},
            "shape": {"$ref": "#/properties/pattern"},
        },
    }
    assert AgentInput(prompt="p", output_schema=named).output_schema == named
    assert answer_problem(named, {"pattern": "a+", "shape": "b"}) is None
    # What a reference points to is read as a schema: one that is none is refused at
    # once, not a TypeError in the workflow once the model answers.
    data = {
        "type": "object",
        "$defs": {"a": {"const": {"minimum": "x"}}},
        "properties": {"b": {"$ref": "#/$defs/a/const"}},
    }
    with pytest.raises(ValueError, match="'#/\\$defs/a/const' does not resolve"):
        AgentInput(prompt="p", output_schema=data)
    # ... unquoted as the validator unquotes it: not a schema beside the one it reads.
    quoted = {
        "type": "object",
        "x-data": {"aA": {"minimum": "x"}, "a%41": {"type": "number"}},
        "properties": {"b": {"$ref": "#/x-data/a%41"}},
    }
    with pytest.raises(ValueError, match="does not resolve"):
        AgentInput(prompt="p", output_schema=quoted)
    # A name map a reference points to is read as a schema: its patterns count.
    hidden = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "b": {"$ref": "#/properties"}},
    }
    with pytest.raises(ValueError, match="does not resolve"):
        AgentInput(prompt="p", output_schema=hidden)


async def test_a_bad_schema_fails_the_run_at_once_naming_the_field(worker: RunningWorker) -> None:
    # Sent as plain JSON past the client's own check (the temporal CLI, another SDK).
    handle = await worker.client.start_workflow(
        "AgentWorkflow",
        {"prompt": "p", "output_schema": {"type": "array"}},
        id=f"bad-schema-{worker.task_queue}",
        task_queue=worker.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "output_schema" in str(failed.value.cause)
    with pytest.raises(ValidationError, match="output_schema"):
        await worker.start({"prompt": "p", "output_schema": {"type": "array"}})


async def test_every_reply_of_a_session_with_output_schema_is_an_object(
    worker: RunningWorker,
) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    session_id = await onward.open_session(
        {
            "tools": [],
            "output_schema": CITY,
            "script": [
                {"text": "", "tool_calls": [answer(city="Tokyo", population_m=37)]},
                {"text": "", "tool_calls": [answer(city="Delhi", population_m=33)]},
            ],
        }
    )
    first = await onward.send_message(session_id, "The largest city?")
    second = await onward.send_message(session_id, "And the next?")
    await onward.close_session(session_id)

    assert first.structured_output == {"city": "Tokyo", "population_m": 37}
    assert second.structured_output == {"city": "Delhi", "population_m": 33}
    assert json.loads(second.reply) == second.structured_output
    with pytest.raises(InvalidInput, match="output_schema"):
        await onward.open_session({"output_schema": {"type": "string"}})
    with pytest.raises(InvalidInput, match="approve_tools: final_answer"):
        await onward.open_session({"output_schema": CITY, "approve_tools": ["final_answer"]})


NOTED = {"type": "object", "properties": {"city": {"type": "string"}, "notes": {"type": "string"}}}
LONG_NOTES = "n" * 5_000
"""Longer than a turn keeps of a reply (TURN_TEXT_CHARS)."""


async def test_a_sessions_turns_carry_each_replys_object_within_bounds(
    worker: RunningWorker,
) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    session_id = await onward.open_session(
        {
            "tools": [],
            "output_schema": NOTED,
            "script": [
                {"text": "", "tool_calls": [answer(city="Tokyo")]},
                {"text": "", "tool_calls": [answer(city="Delhi", notes=LONG_NOTES)]},
                {"text": "plain, and cut off by the budget"},
            ],
            "message_budget": {"max_steps": 1},
        }
    )
    await onward.send_message(session_id, "The largest city?")
    long = await onward.send_message(session_id, "And the next, with notes?")
    plain = await onward.send_message(session_id, "And then?")
    turns = await onward.session_history(session_id)

    assert long.structured_output == {"city": "Delhi", "notes": LONG_NOTES}
    assert plain.structured_output is None and plain.status == "budget_exceeded"
    assert [turn.structured_output for turn in turns] == [{"city": "Tokyo"}, None, None]
    # Too long for the turn, as its reply's text: left out, and said so; not cut into
    # an object that was never the answer.
    assert [turn.structured_output_omitted for turn in turns] == [False, True, False]
    assert turns[1].reply.endswith("more characters]")
    # Workers of the last release read turns too (a carry): nothing new at the defaults.
    assert {"structured_output", "structured_output_omitted"}.isdisjoint(
        turns[2].model_dump(mode="json")
    )


def test_a_turn_keeps_an_object_whose_json_fits_whole_or_not_at_all() -> None:
    fits = {"notes": "n" * 100}
    assert turn_structured_output(fits, len(json.dumps(fits))) == (fits, False)
    assert turn_structured_output(fits, len(json.dumps(fits)) - 1) == (None, True)
    assert turn_structured_output({}, 10) == ({}, False)  # an empty answer is an answer
    assert turn_structured_output(None, 10) == (None, False)


async def test_a_repeat_after_continue_as_new_carries_the_first_replys_object(
    worker: RunningWorker,
) -> None:
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    session_id = await onward.open_session(
        {
            "tools": [],
            "output_schema": NOTED,
            "continue_as_new_after": 1,
            "script": [
                {"text": "", "tool_calls": [answer(city="Tokyo")]},
                {"text": "", "tool_calls": [answer(city="Delhi", notes=LONG_NOTES)]},
            ],
        }
    )
    first_run = (await onward.info(session_id)).temporal_run_id
    short = await onward.send_message(session_id, "The largest city?", idempotency_key="a")
    long = await onward.send_message(session_id, "With notes?", idempotency_key="b")

    async def continued() -> bool:
        return (await onward.info(session_id)).temporal_run_id != first_run

    await eventually(continued)
    again = await onward.send_message(session_id, "The largest city?", idempotency_key="a")
    assert again.repeated and again.structured_output == short.structured_output
    # The turn left the long object out: the client reads it from the message's run.
    again_long = await onward.send_message(session_id, "With notes?", idempotency_key="b")
    assert again_long.repeated and again_long.structured_output == long.structured_output
    # Sent past the client (the temporal CLI, another SDK), the session's own answer
    # carries what the turn kept: the object, not only its JSON text.
    handle = worker.client.get_workflow_handle(session_id)
    raw = await handle.execute_update(
        "send_message",
        SessionMessage(message="The largest city?", idempotency_key="a"),
        result_type=SessionReply,
    )
    assert raw.repeated and raw.structured_output == {"city": "Tokyo"}


async def test_a_sub_agent_answers_in_text_without_the_parents_final_answer(
    worker: RunningWorker,
) -> None:
    def delegating(**arguments: Any) -> dict[str, Any]:
        return {"text": "", "tool_calls": [{"name": "delegate", "arguments": arguments}]}

    # final_answer is the parent's own (its output_schema): no worker has it for a child.
    result = await worker.run(
        {
            "prompt": "Which city? Ask a sub-agent.",
            "tools": ["calculator", "delegate"],
            "output_schema": CITY,
            "script": [
                delegating(prompt="Which city?", script=[{"text": "Tokyo."}]),
                delegating(prompt="Which city?", tools=["final_answer"]),
                {"text": "", "tool_calls": [answer(city="Tokyo", population_m=37)]},
            ],
        }
    )

    assert result.status == "completed", result.reason
    (by_default,) = result.steps[0].tool_calls
    assert by_default.status == "ok", by_default.error
    assert by_default.result is not None and "Tokyo." in by_default.result
    (named,) = result.steps[1].tool_calls
    assert named.child_id is None and named.error is not None
    assert "'final_answer' are not yours" in named.error


async def test_the_history_tells_the_answers_calls_as_the_run_does(
    worker: RunningWorker,
) -> None:
    # Read with no worker (onward steps, trace): final_answer is no unknown tool there.
    handle = await worker.start(
        {
            "prompt": "Which city?",
            "tools": ["calculator"],
            "output_schema": CITY,
            "script": [
                {"text": "", "tool_calls": [answer(city="Tokyo", population_m=-37)]},
                {"text": "Done.", "tool_calls": [answer(city="Tokyo", population_m=37), calc("1")]},
            ],
        }
    )
    result = await handle.result()

    rebuilt = reconstruct([event async for event in handle.fetch_history_events()])
    fields = {"id", "name", "result", "error", "status"}

    def calls(steps: list[StepRecord]) -> list[dict[str, Any]]:
        return [call.model_dump(include=fields) for step in steps for call in step.tool_calls]

    assert [call["status"] for call in calls(result.steps)] == ["error", "ok", "not_run"]
    assert calls(rebuilt.step_log) == calls(result.steps)


async def test_text_answers_count_across_continue_as_new(worker: RunningWorker) -> None:
    chatty = await worker.run(
        {
            "prompt": "Which city?",
            "output_schema": CITY,
            "continue_as_new_after": 1,
            "script": [{"text": "Tokyo."}] * 6,
        }
    )
    assert chatty.status == "failed", chatty.reason
    assert chatty.reason is not None and "plain text 3 times" in chatty.reason
    assert chatty.usage.model_calls == 3


def test_the_new_fields_are_left_out_at_their_defaults() -> None:
    # Workers before them refuse unknown fields (a run's input, a carry between runs of a
    # chain in a rolling upgrade), and a null in every step record is history bytes.
    assert "output_schema" not in AgentInput(prompt="p").model_dump(mode="json")
    step = StepRecord(step=1, started_at=datetime.now(UTC))
    assert "finish_reason" not in step.model_dump(mode="json")
    assert "output_schema" in AgentInput(prompt="p", output_schema=CITY).model_dump(mode="json")
