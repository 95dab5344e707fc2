"""Payload encryption: sealing, rotation, tampering, and a real run with no plaintext in history."""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from conftest import running_worker
from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput
from onward.encryption import EncryptionCodec, EncryptionError, codec_from_env, parse_keys
from onward.workflows import AgentWorkflow


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_payloads_round_trip_and_hide_their_content() -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{key()}"))
    sealed = await codec.encode([plain("the secret plan")])
    assert b"secret" not in sealed[0].SerializeToString()
    assert sealed[0].metadata["encryption-key-id"] == b"k1"
    assert await codec.decode(sealed) == [plain("the secret plan")]


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old, new = key(), key()
    before = await EncryptionCodec(parse_keys(f"old:{old}")).encode([plain("x")])
    rotated = EncryptionCodec(parse_keys(f"new:{new},old:{old}"))
    assert await rotated.decode(before) == [plain("x")]
    after = await rotated.encode([plain("y")])
    assert after[0].metadata["encryption-key-id"] == b"new"
    with pytest.raises(EncryptionError, match="'new', which ONWARD_ENCRYPTION_KEYS does not list"):
        await EncryptionCodec(parse_keys(f"old:{old}")).decode(after)


async def test_tampering_and_wrong_keys_are_caught() -> None:
    codec = EncryptionCodec(parse_keys(f"k:{key()}"))
    sealed = (await codec.encode([plain("x")]))[0]
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(EncryptionError, match="integrity check"):
        await codec.decode([sealed])


@pytest.mark.parametrize("kept", [0, 5, 12, 27])
async def test_a_cut_payload_fails_its_integrity_check(kept: int) -> None:
    """Shorter than a nonce and a tag: the same error as any altered payload, no ValueError."""
    codec = EncryptionCodec(parse_keys(f"k:{key()}"))
    sealed = (await codec.encode([plain("x")]))[0]
    sealed.data = sealed.data[:kept]
    with pytest.raises(EncryptionError, match="integrity check"):
        await codec.decode([sealed])


async def test_unencrypted_payloads_pass_through() -> None:
    codec = EncryptionCodec(parse_keys(f"k:{key()}"))
    assert await codec.decode([plain("old run")]) == [plain("old run")]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nokey", "entry 1"),
        ("k:not-base64!", "not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "has 5 bytes"),
        (f"k:{key()},k:{key()}", "twice"),
        (" , ", "names no key"),
    ],
    ids=["no-colon", "not-base64", "short", "twice", "empty"],  # fixed: the keys are random
)
def test_bad_settings_are_refused_without_echoing_keys(setting: str, message: str) -> None:
    with pytest.raises(EncryptionError, match=message) as caught:
        parse_keys(setting)
    for entry in setting.split(","):
        secret = entry.partition(":")[2].strip()
        if len(secret) > 8:
            assert secret not in str(caught.value)


def test_off_unless_set() -> None:
    assert codec_from_env({}) is None
    codec = codec_from_env({"ONWARD_ENCRYPTION_KEYS": f"a:{key()},b:{key()}"})
    assert codec is not None and codec.key_ids == ["a", "b"]


async def test_a_run_leaves_no_plaintext_in_its_history(
    env: WorkflowEnvironment, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    codec = EncryptionCodec(parse_keys(f"k:{key()}"))
    config = env.client.config()
    config["data_converter"] = dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    client = Client(**config)
    secret = f"zebra-{uuid.uuid4().hex[:8]}"
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
            AgentWorkflow.run, agent, id=f"enc-{uuid.uuid4().hex[:8]}", task_queue=worker.task_queue
        )
        result = await handle.result()
    assert result.status == "completed" and result.output == f"done with {secret}"
    raw = b"".join(
        [
            event.SerializeToString()
            async for event in env.client.get_workflow_handle(handle.id).fetch_history_events()
        ]
    )
    assert secret.encode() not in raw
