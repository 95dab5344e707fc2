"""Large payloads through the SDK's external storage on a local directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.converter import DataConverter

from onward.connection import DATA_CONVERTER
from onward.contracts import ToolOutcome
from onward.store import StoreError
from onward.store.payloads import external_storage


def converter(root: Path, threshold: int = 1024) -> DataConverter:
    storage = external_storage(
        {"ONWARD_PAYLOADS": str(root), "ONWARD_PAYLOAD_THRESHOLD": str(threshold)}
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
