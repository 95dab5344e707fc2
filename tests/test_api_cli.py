"""``onward api``: add-key, the loopback rule without keys, and serving in its own process."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from conftest import eventually, run_onward, spawn_onward
from onward.api_keys import ApiKeys


async def test_add_key_prints_a_key_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    done = await run_onward("api", "add-key", "acme", env={"ONWARD_API_KEYS_FILE": str(keys_file)})
    assert done.code == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("onw_") and "\n" not in key
    stored = json.loads(keys_file.read_text())
    assert key not in keys_file.read_text() and len(stored["acme"]) == 1
    assert ApiKeys.load(keys_file).tenant_for(key) == "acme"
    assert "shown once" in done.stderr


async def test_without_keys_it_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    done = await run_onward(
        "api", "--host", "0.0.0.0", env={"ONWARD_API_KEYS_FILE": ""}, timeout_s=30
    )
    assert done.code == 2
    assert "loopback only" in done.stderr and "Traceback" not in done.stderr
    missing = await run_onward("api", "add-key", "acme", env={"ONWARD_API_KEYS_FILE": ""})
    assert missing.code == 2 and "ONWARD_API_KEYS_FILE" in missing.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_onward_api_serves_with_keys(address: str, client: Client, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    # A tenant of its own: other tests leave runs of theirs on the shared server.
    key = ApiKeys.add(keys_file, f"acme-{uuid.uuid4().hex[:8]}")
    port = free_port()
    spans = tmp_path / "spans.jsonl"
    env = {
        "TEMPORAL_ADDRESS": address,
        "ONWARD_API_KEYS_FILE": str(keys_file),
        "ONWARD_TRACE_FILE": str(spans),
        "ONWARD_TASK_QUEUE": f"no-worker-{uuid.uuid4().hex[:8]}",  # the run only starts
    }
    process = await spawn_onward("api", "--port", str(port), env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def up() -> bool:
                assert process.returncode is None
                try:
                    return (await http.get("/openapi.json")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout_s=30, interval_s=0.2)
            assert (await http.get("/v1/runs")).status_code == 401
            auth = {"Authorization": f"Bearer {key}"}
            mine = await http.get("/v1/runs", headers=auth)
            assert mine.status_code == 200 and mine.json() == []
            created = await http.post("/v1/runs", json={"prompt": "p"}, headers=auth)
            assert created.status_code == 202, created.text
            await client.get_workflow_handle(created.json()["id"]).terminate("test over")
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
    # Traced like the CLI: the run it started has a client span (its spans flushed at exit).
    names = [json.loads(line)["name"] for line in spans.read_text().splitlines()]
    assert "StartWorkflow:AgentWorkflow" in names
