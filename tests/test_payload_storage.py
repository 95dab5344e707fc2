"""Large payloads through the SDK's external storage: a local directory, and a real local S3."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.converter import DataConverter

from conftest import eventually
from onward.connection import DATA_CONVERTER
from onward.contracts import ToolOutcome
from onward.store import StoreError
from onward.store.payloads import external_storage


def converter(root: Path | str, *, threshold: int = 1024, **environ: str) -> DataConverter:
    storage = external_storage(
        {"ONWARD_PAYLOADS": str(root), "ONWARD_PAYLOAD_THRESHOLD": str(threshold), **environ}
    )
    return dataclasses.replace(DATA_CONVERTER, external_storage=storage)


async def test_a_large_payload_is_stored_once_and_comes_back(tmp_path: Path) -> None:
    big = ToolOutcome(content="x" * 5_000_000)
    codec = converter(tmp_path)
    encoded = await codec.encode([big])
    assert sum(p.ByteSize() for p in encoded) < 2_000  # only a reference stays inline
    again = await codec.encode([big])  # a retried activity stores the same content
    assert again == encoded
    assert len(list((tmp_path / "sha256").rglob("*"))) == 2  # one shard dir, one file
    decoded = await converter(tmp_path).decode(encoded, [ToolOutcome])
    assert decoded == [big]


async def test_small_payloads_stay_inline(tmp_path: Path) -> None:
    encoded = await converter(tmp_path).encode([ToolOutcome(content="4")])
    assert b'"4"' in encoded[0].data
    assert not (tmp_path / "sha256").exists()


async def test_a_missing_payload_says_where_it_was_looked_for(tmp_path: Path) -> None:
    encoded = await converter(tmp_path / "worker").encode([ToolOutcome(content="y" * 5000)])
    with pytest.raises(StoreError, match="ONWARD_PAYLOADS"):
        await converter(tmp_path / "elsewhere").decode(encoded, [ToolOutcome])


def test_a_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="ONWARD_PAYLOAD_THRESHOLD"):
        external_storage({"ONWARD_PAYLOAD_THRESHOLD": "big"})


def test_a_bad_s3_location_is_refused() -> None:
    with pytest.raises(ValueError, match="must name a bucket"):
        external_storage({"ONWARD_PAYLOADS": "s3:///prefix"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The URL of a real S3 API (moto's server) on a free local port, with a bucket ``payloads``."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.fail("moto's server is not installed: pip install 'moto[server]' (dev extra)")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    # Credentials for moto only, through the standard AWS environment aioboto3 reads.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        async with httpx.AsyncClient() as http:

            async def created() -> bool:
                try:
                    response = await http.put(f"{endpoint}/payloads")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await eventually(created)
            yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def test_a_5_mb_payload_round_trips_through_s3(s3_endpoint: str) -> None:
    big = ToolOutcome(content="".join(f"{i:07d}\n" for i in range(625_000)))
    codec = converter("s3://payloads/runs/a", AWS_ENDPOINT_URL=s3_endpoint)
    encoded = await codec.encode([big])
    assert sum(p.ByteSize() for p in encoded) < 2_000  # only a reference stays inline
    assert await codec.encode([big]) == encoded  # content-addressed: stored once
    # Another process (a fresh converter) reads it back from the bucket.
    decoded = await converter("s3://payloads/runs/a", AWS_ENDPOINT_URL=s3_endpoint).decode(
        encoded, [ToolOutcome]
    )
    assert decoded == [big]
    async with httpx.AsyncClient() as http:
        listing = await http.get(f"{s3_endpoint}/payloads?list-type=2")
    keys = [part.split("</Key>")[0] for part in listing.text.split("<Key>")[1:]]
    assert len(keys) == 1 and keys[0].startswith("runs/a/v0/")  # under the prefix
    with pytest.raises(RuntimeError, match=r"retrieve failed .*prefix=elsewhere/"):
        # A converter on another prefix does not find it.
        await converter("s3://payloads/elsewhere", AWS_ENDPOINT_URL=s3_endpoint).decode(
            encoded, [ToolOutcome]
        )
