"""What operators see without reading code: summaries, the progress card, search attributes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsResponse
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from conftest import RunningWorker, eventually, running_worker
from onward import search_attributes as sa
from onward.activities.providers.scripted import ScriptedModel
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput, ModelRequest, ModelResponse, Usage
from onward.errors import InvalidInput
from onward.starter.listing import _readable, run_page, run_table
from onward.worker import ensure_search_attributes

SCRIPT = [
    {
        "text": "adding",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "delay_s": 1.0,
    },
    {
        "text": "saving",
        "tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "4"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "delay_s": 1.0,
    },
    {"text": "4", "usage": {"input_tokens": 10, "output_tokens": 5}},
]


async def test_activities_have_readable_summaries(worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "p", "script": SCRIPT})
    await handle.result()
    summaries = []
    local_types = []
    async for event in handle.fetch_history_events():
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            summary = event.user_metadata.summary
            summaries.append(DATA_CONVERTER.payload_converter.from_payload(summary, str))
        if event.marker_recorded_event_attributes.details.get("data"):
            data = event.marker_recorded_event_attributes.details["data"].payloads[0]
            marker = DATA_CONVERTER.payload_converter.from_payload(data, dict)
            local_types.append(marker["activity_type"])
    assert "calculator(2+2)" in summaries  # a local activity: the summary is on its marker
    assert "scripted · step 1" in summaries
    assert "scripted · step 3" in summaries
    assert "write_file(path=a.txt, content=4)" in summaries
    # The Web UI labels a local activity by its type alone: it is the call's summary.
    # The run's own are named for what they do (the end's write and listing are local).
    assert local_types == [
        "describe_worker",
        "calculator(2+2)",
        "write_transcript",
        "list_artifacts",
    ]
    assert "write transcript" in summaries and "list artifacts" in summaries


async def test_current_details_follow_the_run(worker: RunningWorker) -> None:
    handle = await worker.start({"prompt": "p", "script": SCRIPT, "budget": {"max_tool_calls": 5}})
    seen: set[str] = set()

    async def details() -> str:
        metadata = await handle.query("__temporal_workflow_metadata")
        return str(metadata.current_details)

    async def at_step_one() -> bool:
        seen.add(await details())
        return any("step 1" in text for text in seen)

    await eventually(at_step_one)
    await handle.result()
    final = await details()
    seen.add(final)
    assert final.startswith("**completed** · step 3")
    assert "tool calls 2 / 5" in final
    assert len(seen) >= 2  # it changed as the run progressed


async def test_search_attributes_are_registered_and_filter(
    client: Client, worker: RunningWorker
) -> None:
    # The session's dev server was started bare: the worker registered them.
    assert await ensure_search_attributes(client, "default") == sorted(k.name for k in sa.ALL)

    tenant = f"tenant-{worker.task_queue}"
    done = await worker.start(
        AgentInput.model_validate({"prompt": "p", "script": SCRIPT[2:], "tenant": tenant})
    )
    await done.result()
    stopped = await worker.start(
        {"prompt": "p", "script": SCRIPT, "tenant": tenant, "budget": {"max_steps": 1}}
    )
    await stopped.result()

    async def listed(query: str) -> list[str]:
        return [wf.id async for wf in client.list_workflows(query)]

    # Both runs are their tenant's from their start; their last upserts (status, steps)
    # reach the visibility store a moment after the runs end, each on its own.
    async def indexed() -> bool:
        return (
            await listed(f'OnwardTenant = "{tenant}" AND OnwardStatus = "budget_exceeded"')
            == [stopped.id]
            and await listed(
                f'OnwardTenant = "{tenant}" AND OnwardStatus = "completed" '
                'AND OnwardModel = "scripted"'
            )
            == [done.id]
            and sorted(await listed(f'OnwardTenant = "{tenant}" AND OnwardSteps = 1'))
            == sorted([done.id, stopped.id])
        )

    await eventually(indexed)
    assert sorted(await listed(f'OnwardTenant = "{tenant}"')) == sorted([done.id, stopped.id])
    description = await stopped.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(sa.TOKENS) == 15
    assert attributes.get(sa.STEPS) == 1
    cost = attributes.get(sa.COST)
    assert cost is not None and cost > 0


def calc(expression: str) -> dict[str, object]:
    return {
        "tool_calls": [{"name": "calculator", "arguments": {"expression": expression}}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


async def onward_upserts(handle: WorkflowHandle[Any, Any]) -> list[set[str]]:
    """The names each of a run's upserts set, Temporal's own (patch versions) left out."""
    upserts = []
    async for event in handle.fetch_history_events():
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            names = {name for name in fields.indexed_fields if name.startswith("Onward")}
            if names:
                upserts.append(names)
    return upserts


async def test_fast_steps_upsert_their_counters_with_the_runs_state_changes(
    worker: RunningWorker,
) -> None:
    # Five quick steps: the counters go with the first upsert and with the end, not
    # after every step (each upsert is an event and a visibility write).
    script = [calc(f"{n}+1") for n in range(5)] + [{"text": "done"}]
    handle = await worker.start({"prompt": "p", "tools": ["calculator"], "script": script})
    result = await handle.result()
    upserts = await onward_upserts(handle)
    assert len(upserts) == 2, upserts
    assert {sa.STATUS.name, sa.MODEL.name} <= upserts[0]
    assert {sa.STATUS.name, sa.STEPS.name, sa.TOKENS.name} <= upserts[1]
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(sa.STATUS) == "completed"
    assert attributes.get(sa.STEPS) == 6
    assert attributes.get(sa.TOKENS) == result.usage.total_tokens

    # A change of state publishes the counters at once: paused after 2 steps, the
    # list shows those 2.
    paused = await worker.start(
        {
            "prompt": "p",
            "tools": ["calculator"],
            "script": script,
            "budget": {"max_steps": 2, "on_exceeded": "pause"},
        }
    )

    async def shows_the_pause() -> bool:
        attributes = (await paused.describe()).typed_search_attributes
        return attributes.get(sa.STATUS) == "budget_paused"

    await eventually(shows_the_pause)
    attributes = (await paused.describe()).typed_search_attributes
    assert attributes.get(sa.STEPS) == 2 and attributes.get(sa.TOKENS) == 30
    await paused.terminate("done looking")


async def test_a_run_the_client_starts_is_listed_at_once_and_upserts_only_its_end(
    worker: RunningWorker,
) -> None:
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    script = [calc(f"{n}+1") for n in range(3)] + [{"text": "done"}]
    agent = {"prompt": "p", "tools": ["calculator"], "script": script, "tenant": "acme"}

    # Listed with its first values before any worker has run it.
    queued = OnwardClient(worker.client, task_queue=f"{worker.task_queue}-nobody")
    waiting = worker.client.get_workflow_handle(await queued.start(agent))
    attributes = (await waiting.describe()).typed_search_attributes
    assert attributes.get(sa.STATUS) == "running"
    assert attributes.get(sa.MODEL) == "scripted"
    assert attributes.get(sa.TENANT) == "acme"
    assert (attributes.get(sa.STEPS), attributes.get(sa.TOKENS)) == (0, 0)
    await waiting.terminate("nobody runs this queue")

    run_id = await client.start(agent)
    result = await client.result(run_id)
    handle = worker.client.get_workflow_handle(run_id)
    assert result.status == "completed"
    # No patch marker (and no upsert of Temporal's own for it), no upsert of values the
    # run was started with: one upsert, at the end.
    events = [event async for event in handle.fetch_history_events()]
    assert not [e for e in events if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    upserts = [e for e in events if e.upsert_workflow_search_attributes_event_attributes.ByteSize()]
    (names,) = await onward_upserts(handle)
    assert len(upserts) == 1 and {sa.STATUS.name, sa.STEPS.name, sa.TOKENS.name} <= names
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(sa.STATUS) == "completed"
    assert attributes.get(sa.STEPS) == 4
    assert attributes.get(sa.TOKENS) == result.usage.total_tokens
    assert attributes.get(sa.TENANT) == "acme"


async def test_a_client_that_cannot_list_the_attributes_starts_runs_without_them(
    worker: RunningWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise RPCError("permission denied", RPCStatusCode.PERMISSION_DENIED, b"")

    monkeypatch.setattr(worker.client.operator_service, "list_search_attributes", refused)
    client = OnwardClient(worker.client, task_queue=worker.task_queue)
    run_id = await client.start({"prompt": "p", "script": [{"text": "done"}]})
    handle = worker.client.get_workflow_handle(run_id)
    started = await anext(aiter(handle.fetch_history_events()))
    assert not started.workflow_execution_started_event_attributes.search_attributes.indexed_fields
    assert (await client.result(run_id)).status == "completed"
    # The run publishes them itself.
    attributes = (await handle.describe()).typed_search_attributes
    assert (attributes.get(sa.STATUS), attributes.get(sa.MODEL)) == ("completed", "scripted")


class UnpricedModel:
    """Answers at once; its model has no price in any table."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(
            text="hello", usage=Usage(input_tokens=10, output_tokens=5), model=request.model
        )


async def test_a_run_of_unknown_cost_is_not_listed_as_free(
    client: Client, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    providers = {"scripted": ScriptedModel(), "acme": UnpricedModel()}
    async with running_worker(
        client, tmp_path, search_attribute_names, providers=providers
    ) as worker:
        onward = OnwardClient(client, task_queue=worker.task_queue)
        # Started with OnwardCostUsd 0 (as every client start is), like a free run.
        tenant = f"unpriced-{uuid.uuid4().hex[:8]}"
        run_id = await onward.start({"prompt": "p", "model": "acme:mystery-1", "tenant": tenant})
        result = await onward.result(run_id)

    assert result.status == "completed" and not result.usage.cost_known
    handle = client.get_workflow_handle(run_id)
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(sa.TOKENS) == 15
    assert attributes.get(sa.COST) is None  # no figure, rather than $0
    assert [
        e async for e in client.list_workflows(f'WorkflowId = "{run_id}" AND OnwardCostUsd = 0')
    ] == []

    async def listed() -> bool:
        rows = (await run_page(client, tenant=tenant, limit=5)).rows
        return [row.status for row in rows] == ["completed"]

    await eventually(listed)
    (row,) = (await run_page(client, tenant=tenant, limit=5)).rows
    assert row.cost_usd is None
    header, line = run_table([row])[:2]
    assert line.split()[header.split().index("COST")] == "-"


class _Visibility:
    """A workflow service whose list answers ``statuses`` in turn (None: a page)."""

    def __init__(self, *statuses: RPCStatusCode | None) -> None:
        self.statuses = list(statuses)
        self.retried: list[bool] = []

    async def list_workflow_executions(self, request: Any, *, retry: bool = False) -> Any:
        self.retried.append(retry)
        status = self.statuses.pop(0)
        if status is not None:
            raise RPCError("something went wrong, please retry", status, b"")
        return ListWorkflowExecutionsResponse()


class _Client:
    namespace = "default"

    def __init__(self, service: _Visibility) -> None:
        self.workflow_service = service


@pytest.mark.parametrize(
    ("statuses", "refused"),
    [
        # The token refused, the list without it answered: the token is bad, at once.
        ((RPCStatusCode.UNKNOWN, None), True),
        ((RPCStatusCode.INVALID_ARGUMENT, None), True),
        # Refused both ways: the server's fault, left to the SDK's retries.
        ((RPCStatusCode.UNKNOWN, RPCStatusCode.UNKNOWN), False),
        ((RPCStatusCode.UNAVAILABLE,), False),
        ((None,), False),
    ],
)
async def test_a_token_temporal_cannot_read_is_told_from_a_server_fault(
    statuses: tuple[RPCStatusCode | None, ...], refused: bool
) -> None:
    service = _Visibility(*statuses)
    client: Any = _Client(service)
    if refused:
        with pytest.raises(InvalidInput, match="page_token: not a token") as err:
            await _readable(client, "WorkflowType = 'x'", b"made up")
        assert err.value.problems[0]["loc"] == ("page_token",)
    else:
        await _readable(client, "WorkflowType = 'x'", b"made up")
    assert service.retried == [False] * len(statuses)  # each call at once, none retried
    assert service.statuses == []
