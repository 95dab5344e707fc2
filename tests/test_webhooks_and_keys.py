"""Webhook signatures and API keys: pure rules, no server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from onward.api_keys import ApiKeys, ApiKeysError, key_hash
from onward.webhooks import sign, verify

BODY = b'{"status": "completed"}'


def test_a_signature_verifies_and_matches_the_documented_recipe() -> None:
    header = sign(BODY, "s3cret", 1_700_000_000)
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert t == "1700000000"
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert v1 == expected
    assert verify(header, BODY, "s3cret", now=1_700_000_010)
    # As the README calls it, three arguments: now is the current time.
    fresh = sign(BODY, "s3cret", int(time.time()))
    assert verify(fresh, BODY, "s3cret") and not verify(header, BODY, "s3cret")


@pytest.mark.parametrize(
    ("header", "body", "secret", "now"),
    [
        (sign(BODY, "s3cret", 1_700_000_000), BODY + b" ", "s3cret", 1_700_000_000),
        (sign(BODY, "s3cret", 1_700_000_000), BODY, "other", 1_700_000_000),
        (sign(BODY, "s3cret", 1_700_000_000), BODY, "s3cret", 1_700_000_301),
        ("t=abc,v1=00", BODY, "s3cret", 0),
        ("v1=00", BODY, "s3cret", 0),
        ("", BODY, "s3cret", 0),
        # Not ASCII: compare_digest raised TypeError, int() read other digits.
        ("t=1700000000,v1=\u00e9", BODY, "s3cret", 1_700_000_000),
        (
            sign(BODY, "s3cret", 1_700_000_000).replace("t=1", "t=\u0661"),
            BODY,
            "s3cret",
            1_700_000_000,
        ),
    ],
)
def test_altered_stale_or_malformed_signatures_fail(
    header: str, body: bytes, secret: str, now: float
) -> None:
    assert not verify(header, body, secret, now=now)


def test_keys_map_to_their_tenant_and_only_hashes_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    alpha = ApiKeys.add(path, "alpha")
    beta = ApiKeys.add(path, "beta")
    stored = path.read_text()
    assert alpha not in stored and beta not in stored
    assert json.loads(stored) == {"alpha": [key_hash(alpha)], "beta": [key_hash(beta)]}
    keys = ApiKeys.load(path)
    assert keys.tenant_for(alpha) == "alpha"
    assert keys.tenant_for(beta) == "beta"
    assert keys.tenant_for(alpha + "x") is None
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('["sha256:00"]', "expected"),
        ('{"alpha": ["md5:00"]}', "is not 'sha256:<64 hex digits>'"),
        ('{"bad tenant": []}', "bad tenant name"),
        (json.dumps({"a": [key_hash("k")], "b": [key_hash("k")]}), "for tenants 'a' and 'b'"),
    ],
)
def test_a_malformed_keys_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ApiKeysError, match=message):
        ApiKeys.load(path)
