"""Encrypted runs: history read with the keys, a clear error without them, no plaintext stored."""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from conftest import run_onward, running_worker
from onward.connection import DATA_CONVERTER, data_converter
from onward.contracts import AgentInput
from onward.encryption import EncryptionCodec, parse_keys
from onward.workflows import AgentWorkflow


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_the_one_converter_encrypts_when_keys_are_set() -> None:
    assert data_converter({}).payload_codec is None
    converter = data_converter({"ONWARD_ENCRYPTION_KEYS": f"k1:{key()}"})
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_ids == ["k1"]
    assert converter.external_storage is not None  # both: the codec seals, storage keeps


async def test_steps_and_trace_of_an_encrypted_run_need_its_keys(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    keys = f"k1:{key()}"
    config = env.client.config()
    config["data_converter"] = dataclasses.replace(
        DATA_CONVERTER, payload_codec=EncryptionCodec(parse_keys(keys))
    )
    client = Client(**config)
    secret = f"okapi-{uuid.uuid4().hex[:8]}"
    agent = AgentInput.model_validate(
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

    for setting in ("", f"other:{key()}"):
        refused = await run_onward(
            "steps", handle.id, env=where | {"ONWARD_ENCRYPTION_KEYS": setting}
        )
        assert refused.code != 0
        assert "Traceback" not in refused.stderr
        assert "ONWARD_ENCRYPTION_KEYS" in refused.stderr, refused.stderr
        assert secret not in refused.stdout + refused.stderr
