"""Encrypted runs: history read with the keys, a clear error without them, no plaintext stored."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from postgres_server import postgres_url
from provider_servers import OPENAI_PATH, FakeProvider, Reply
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from api_server import read_events, serving
from conftest import eventually, run_onward, running_worker
from onward.activities.providers import close_providers, providers_from_env
from onward.client import OnwardClient
from onward.connection import DATA_CONVERTER, data_converter
from onward.contracts import AgentInput, Message
from onward.encryption import ENCODING, EncryptionCodec, EncryptionError, parse_keys
from onward.starter.api import ApiSettings, api_app
from onward.starter.sealed import opened_pending
from onward.store import LocalStore, TranscriptStore, open_store
from onward.workflows import AgentWorkflow

__all__ = ["postgres_url"]  # the fixture, imported for the tests below


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def encrypted_client(env: WorkflowEnvironment, codec: EncryptionCodec) -> Client:
    config = env.client.config()
    config["data_converter"] = dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    return Client(**config)


def secret_run(secret: str) -> AgentInput:
    return AgentInput.model_validate(
        {
            "prompt": f"remember {secret}",
            "script": [
                {
                    "text": f"noting {secret}",
                    "tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}],
                },
                {"text": f"done with {secret}"},
            ],
            "tools": ["calculator"],
        }
    )


def test_the_one_converter_encrypts_when_keys_are_set() -> None:
    assert data_converter({}).payload_codec is None
    converter = data_converter({"ONWARD_ENCRYPTION_KEYS": f"k1:{key()}"})
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_ids == ["k1"]
    assert converter.external_storage is not None  # both: the codec seals, storage keeps
    failure = converter.failure_converter.to_failure(
        ValueError("quoting the prompt"), converter.payload_converter, Failure()
    )
    assert "prompt" not in str(failure)  # failures' messages go to the codec too


async def test_steps_and_trace_of_an_encrypted_run_need_its_keys(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    keys = f"k1:{key()}"
    client = encrypted_client(env, EncryptionCodec(parse_keys(keys)))
    secret = f"okapi-{uuid.uuid4().hex[:8]}"
    agent = secret_run(secret)
    async with running_worker(client, tmp_path / "ws", search_attribute_names) as worker:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            agent,
            id=f"enc-cli-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        await handle.result()
    # The worker is gone: everything below comes from the history.
    where = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ONWARD_HOME": str(tmp_path / "home"),
    }
    keyed = where | {"ONWARD_ENCRYPTION_KEYS": keys}
    steps = await run_onward("steps", handle.id, "--json", env=keyed)
    assert steps.code == 0, steps.stderr
    texts = [step["text"] for step in steps.json()]
    assert texts == [f"noting {secret}", f"done with {secret}"]
    trace = await run_onward("trace", handle.id, "--json", env=keyed)
    assert trace.code == 0, trace.stderr
    assert [step["text"] for step in trace.json()["steps"]] == texts

    for command, setting in itertools.product(("steps", "result", "watch"), ("", f"o:{key()}")):
        refused = await run_onward(
            command, handle.id, env=where | {"ONWARD_ENCRYPTION_KEYS": setting}
        )
        assert refused.code != 0
        assert "Traceback" not in refused.stderr, (command, refused.stderr)
        assert "ONWARD_ENCRYPTION_KEYS" in refused.stderr, (command, refused.stderr)
        assert secret not in refused.stdout + refused.stderr


async def test_a_model_error_quoting_the_prompt_is_sealed_in_history(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """A failure's message is no payload, but a provider's can quote what it was sent:
    with keys it is encrypted too, and readers with the keys still show it."""
    keys = f"k1:{key()}"
    config = env.client.config()
    config["data_converter"] = data_converter(
        {"ONWARD_ENCRYPTION_KEYS": keys, "ONWARD_PAYLOADS": str(tmp_path / "payloads")}
    )
    client = Client(**config)
    secret = f"quokka-{uuid.uuid4().hex[:8]}"
    refusal = {"error": {"message": f"flagged: 'remember {secret}'"}}
    async with FakeProvider(OPENAI_PATH) as provider:
        provider.script(Reply(500, refusal), Reply(400, refusal))
        providers = providers_from_env({"OPENAI_BASE_URL": f"{provider.url}/v1"})
        try:
            async with running_worker(
                client, tmp_path / "ws", search_attribute_names, providers=providers
            ) as worker:
                handle = await worker.start(
                    {"prompt": f"remember {secret}", "model": "openai:gpt-4o-mini"}
                )
                result = await handle.result()
        finally:
            await close_providers(providers)
    assert result.status == "failed" and secret in (result.reason or "")  # the run reads it
    raw = b"".join([event.SerializeToString() async for event in handle.fetch_history_events()])
    assert secret.encode() not in raw
    where = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ONWARD_HOME": str(tmp_path / "home"),
        "ONWARD_ENCRYPTION_KEYS": keys,
        "ONWARD_PAYLOADS": str(tmp_path / "payloads"),
    }
    trace = await run_onward("trace", handle.id, "--json", env=where)
    assert trace.code == 0, trace.stderr
    call = trace.json()["steps"][0]["model_call"]
    assert secret in call["failure"] and secret in call["last_failure"]


async def test_a_retried_calls_last_failure_is_opened_for_status_with_the_keys() -> None:
    """``onward status`` and ``watch`` show a pending call's last failure, which a
    keyed worker encrypted: opened with the keys, left as Temporal's placeholder without."""
    keys = {"ONWARD_ENCRYPTION_KEYS": f"k1:{key()}"}
    keyed = data_converter(keys)
    cause = ApplicationError("openai: 500: upstream choked on 'remember okapi'")
    # Heartbeat details are not opened (here under another key; or stored away).
    foreign = await data_converter({"ONWARD_ENCRYPTION_KEYS": f"k2:{key()}"}).encode(["hb"])
    pending = PendingActivityInfo(attempt=2, heartbeat_details=Payloads(payloads=foreign))
    await keyed.encode_failure(cause, pending.last_failure)
    assert "okapi" not in str(pending)
    unkeyed = PendingActivityInfo()
    unkeyed.CopyFrom(pending)
    [opened] = await opened_pending([pending], keyed)
    assert opened.last_failure.message == cause.message
    [still] = await opened_pending([unkeyed], data_converter({}))
    assert still.last_failure.message == "Encoded failure"


async def test_a_worker_without_the_keys_names_the_setting(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """Its workflow tasks fail (it cannot read the run), on a message that says why,
    not on the converter's ``KeyError: 'Unknown payload encoding binary/encrypted'``."""
    keyed = encrypted_client(env, EncryptionCodec(parse_keys(f"k1:{key()}")))
    async with running_worker(env.client, tmp_path / "ws", search_attribute_names) as worker:
        handle = await keyed.start_workflow(
            AgentWorkflow.run,
            secret_run("x"),
            id=f"enc-nokey-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        failures: list[str] = []

        async def task_failed() -> bool:
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    failure = event.workflow_task_failed_event_attributes.failure
                    failures.extend([failure.message, failure.cause.message])
            return bool(failures)

        await eventually(task_failed)
        await handle.terminate()
    assert any("set ONWARD_ENCRYPTION_KEYS on this process" in text for text in failures), failures


async def test_local_tool_calls_of_an_encrypted_run_are_typed_without_their_arguments(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    """An activity type is plain text in the history (and span names): an encrypting
    worker's local tool call is ``calculator(…)``, a plain one's ``calculator(6*7)``."""
    sealed = encrypted_client(env, EncryptionCodec(parse_keys(f"k1:{key()}")))
    types: dict[str, list[str]] = {}
    for name, client in (("sealed", sealed), ("plain", env.client)):
        async with running_worker(client, tmp_path / name, search_attribute_names) as worker:
            handle = await client.start_workflow(
                AgentWorkflow.run,
                secret_run("x"),
                id=f"enc-type-{uuid.uuid4().hex[:8]}",
                task_queue=worker.task_queue,
            )
            await handle.result()
        history = await handle.fetch_history()
        markers = [
            json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)
            for event in history.events
            if event.HasField("marker_recorded_event_attributes")
        ]
        types[name] = [marker["activity_type"] for marker in markers]
        if name == "sealed":
            # Nowhere in the history (its text form shows payloads' printable bytes).
            assert "6*7" not in "".join(str(event) for event in history.events)
    assert "calculator(…)" in types["sealed"]
    assert "calculator(6*7)" in types["plain"]


async def test_the_transcript_store_holds_ciphertext(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{key()}"))
    root = tmp_path / "store"
    store = TranscriptStore(LocalStore(root), codec)
    secret = f"quokka-{uuid.uuid4().hex[:8]}"
    async with running_worker(
        encrypted_client(env, codec), tmp_path / "ws", search_attribute_names, store=store
    ) as worker:
        handle = await worker.client.start_workflow(
            AgentWorkflow.run,
            secret_run(secret),
            id=f"enc-store-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        result = await handle.result()
    assert result.transcript is not None
    files = [path for path in root.rglob("*") if path.is_file()]
    assert files and all(secret.encode() not in path.read_bytes() for path in files)

    messages = await store.messages(result.transcript)
    assert messages[0].content == f"remember {secret}"
    assert [step.text for step in await store.steps(result.transcript)] == [
        f"noting {secret}",
        f"done with {secret}",
    ]
    with pytest.raises(EncryptionError, match="ONWARD_ENCRYPTION_KEYS"):
        await TranscriptStore(LocalStore(root)).messages(result.transcript)


@pytest.mark.parametrize("backend", ["local", "postgresql"])
async def test_sealed_documents_in_either_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(tmp_path / "store") if backend == "local" else request.getfixturevalue("postgres_url")
    codec = EncryptionCodec(parse_keys(f"k1:{key()}"))
    store = await open_store(url, codec)
    transcript = f"run-{uuid.uuid4().hex[:12]}"
    try:
        # Written before encryption was turned on: still read as it is.
        await TranscriptStore(store.backend).write_messages(transcript, 0, [user("old and plain")])
        await store.write_messages(transcript, 1, [user("the secret plan")])
        rows = await store.backend.read(transcript, "messages", 0, None)
        assert b"old and plain" in rows[0] and b"secret" not in rows[1]
        read = await store.messages(transcript)
        assert [m.content for m in read] == ["old and plain", "the secret plan"]
    finally:
        await store.close()


def user(text: str) -> Message:
    return Message(role="user", content=text)


async def test_the_api_streams_an_encrypted_run_decrypted(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{key()}"))
    secret = f"tapir-{uuid.uuid4().hex[:8]}"
    client = encrypted_client(env, codec)
    async with (
        running_worker(client, tmp_path / "ws", search_attribute_names) as worker,
        serving(api_app(ApiSettings(), OnwardClient(client, task_queue=worker.task_queue))) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        body = secret_run(secret).model_dump(mode="json", exclude_defaults=True)
        created = (await http.post("/v1/runs", json=body)).json()
        events = await read_events(http, created["events_url"])
    decisions = [event.data for event in events if event.event == "model"]
    assert [d["text"] for d in decisions] == [f"noting {secret}", f"done with {secret}"]
    assert events[-1].data["output"] == f"done with {secret}"
    raw = b"".join(
        [
            event.SerializeToString()
            async for event in env.client.get_workflow_handle(created["id"]).fetch_history_events()
        ]
    )
    assert secret.encode() not in raw  # the stream decrypted what the history keeps sealed


async def test_an_api_without_the_keys_says_so_before_a_stream_begins(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # The stream answered 200, sent only "retry: 1000" and closed: an EventSource
    # reopened it every second forever, the reason only in the API's log.
    sealed = encrypted_client(env, EncryptionCodec(parse_keys(f"k1:{key()}")))
    async with running_worker(sealed, tmp_path / "ws", search_attribute_names) as worker:
        agent = secret_run("x").model_copy(update={"tenant": "default"})  # the API's own
        run_id = await OnwardClient(sealed, task_queue=worker.task_queue).start(agent)
        await sealed.get_workflow_handle(run_id).result()
    keyless = OnwardClient(env.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), keyless)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        answer = await http.get(f"/v1/runs/{run_id}/events")
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["type"] == "EncryptionError"
        assert "ONWARD_ENCRYPTION_KEYS" in answer.json()["error"]["message"]
        async with ws_connect(f"ws{base.removeprefix('http')}/v1/runs/{run_id}/ws") as socket:
            message = json.loads(await socket.recv())
            assert (message["type"], message["status"]) == ("error", 500)
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_a_large_payload_is_stored_as_ciphertext(tmp_path: Path) -> None:
    converter = data_converter(
        {
            "ONWARD_ENCRYPTION_KEYS": f"k1:{key()}",
            "ONWARD_PAYLOADS": str(tmp_path / "payloads"),
            "ONWARD_PAYLOAD_THRESHOLD": "1024",
        }
    )
    value = "the secret plan " * 200
    (reference,) = await converter.encode([value])
    assert reference.ByteSize() < 1024 and b"secret" not in reference.SerializeToString()
    files = [path for path in (tmp_path / "payloads").rglob("*") if path.is_file()]
    assert files and all(b"secret" not in path.read_bytes() for path in files)
    assert await converter.decode([reference], [str]) == [value]


async def test_streamed_tokens_of_an_encrypted_run_are_sealed_in_history(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{key()}"))
    secret = f"okapi-{uuid.uuid4().hex[:8]}"
    client = encrypted_client(env, codec)
    async with (
        running_worker(client, tmp_path / "ws", search_attribute_names) as worker,
        serving(api_app(ApiSettings(), OnwardClient(client, task_queue=worker.task_queue))) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        body = {
            **secret_run(secret).model_dump(mode="json", exclude_defaults=True),
            "stream": True,
        }
        created = (await http.post("/v1/runs", json=body)).json()
        events = await read_events(http, created["events_url"])
    tokens = [event.data for event in events if event.event == "token"]
    assert "".join(t["text"] for t in tokens if t["call"] == 2) == f"done with {secret}"
    raw = b"".join(
        [
            event.SerializeToString()
            async for event in env.client.get_workflow_handle(created["id"]).fetch_history_events()
        ]
    )
    assert secret.encode() not in raw
    handle = env.client.get_workflow_handle(created["id"])
    batches = [
        event.workflow_execution_signaled_event_attributes.input.payloads[0]
        async for event in handle.fetch_history_events()
        if event.workflow_execution_signaled_event_attributes.signal_name
        == "__temporal_workflow_stream_publish"
    ]
    assert batches  # the tokens went through history, each batch sealed whole
    assert all(batch.metadata["encoding"] == ENCODING for batch in batches)


async def test_a_report_without_the_keys_leaves_sealed_runs_out_and_says_so(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    # One sealed run in the window failed the whole report for a process without keys.
    tenant = f"mixed-{uuid.uuid4().hex[:8]}"
    keys = f"k1:{key()}"
    sealed = OnwardClient(encrypted_client(env, EncryptionCodec(parse_keys(keys))))
    plain = OnwardClient(env.client)
    async with (
        running_worker(sealed.temporal, tmp_path / "a", search_attribute_names) as keyed,
        running_worker(plain.temporal, tmp_path / "b", search_attribute_names) as open_worker,
    ):
        agent = secret_run("in-the-report").model_copy(update={"tenant": tenant})
        for client, worker in ((sealed, keyed), (plain, open_worker)):
            run_id = await OnwardClient(client.temporal, task_queue=worker.task_queue).start(agent)
            await client.temporal.get_workflow_handle(run_id).result()

    async def both_listed() -> bool:
        return (await plain.report("10m", tenant=tenant)).unreadable == 1

    await eventually(both_listed)
    report = await plain.report("10m", tenant=tenant)
    assert (report.runs, report.unreadable) == (1, 1)
    where = {"TEMPORAL_ADDRESS": env.client.service_client.config.target_host}
    done = await run_onward("report", "--tenant", tenant, "--since", "10m", env=where)
    assert done.code == 0, done.stderr
    assert "(1 run left out: encrypted with keys this process lacks" in done.stdout
    # With the keys (as the workers have them), both runs are read.
    with_keys = where | {"ONWARD_ENCRYPTION_KEYS": keys}
    both = await run_onward("report", "--tenant", tenant, "--since", "10m", "--json", env=with_keys)
    assert both.code == 0, both.stderr
    assert (both.json()["runs"], both.json()["unreadable"]) == (2, 0)
