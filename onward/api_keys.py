"""API keys of the HTTP API: ``ONWARD_API_KEYS_FILE`` maps tenants to hashes of their keys.

The file is ``{"<tenant>": ["sha256:<hex of the key>", ...]}``: only hashes are
stored, so the file leaks no key. ``onward api add-key TENANT`` makes a new
key with :func:`new_key` and stores :func:`key_hash` of it. A request's
``Authorization: Bearer <key>`` is hashed and looked up; the comparison of
hashes is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = ["KEY_PREFIX", "ApiKeys", "ApiKeysError", "key_hash", "new_key"]

KEY_PREFIX = "onw_"
"""New keys start with this, so a leaked one is easy to recognise (and to scan for)."""
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class ApiKeysError(Exception):
    """The keys file is missing or malformed; the message names the entry."""


def new_key() -> str:
    """A fresh API key: the prefix and 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """``sha256:<hex>`` of a key, as the keys file stores it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Tenants by key hash."""

    def __init__(self, tenants: Mapping[str, list[str]]) -> None:
        self._by_hash: dict[str, str] = {}
        for tenant, hashes in tenants.items():
            if not _TENANT.fullmatch(tenant):
                raise ApiKeysError(f"bad tenant name {tenant!r}")
            for entry in hashes:
                if not _HASH.fullmatch(entry):
                    raise ApiKeysError(
                        f"tenant {tenant!r}: {entry[:12]!r}... is not 'sha256:<64 hex digits>'"
                    )
                other = self._by_hash.setdefault(entry, tenant)
                if other != tenant:  # the key would silently be the later tenant's
                    raise ApiKeysError(
                        f"{entry[:19]}... is listed for tenants {other!r} and {tenant!r}: "
                        "a key belongs to one tenant"
                    )

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """Read a keys file (see the module docstring)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ApiKeysError(f"cannot read {path}: {err.strerror}") from err
        except json.JSONDecodeError as err:
            raise ApiKeysError(f"{path} is not JSON: {err}") from err
        if not isinstance(raw, dict) or not all(
            isinstance(v, list) and all(isinstance(h, str) for h in v) for v in raw.values()
        ):
            raise ApiKeysError(f'{path}: expected {{"<tenant>": ["sha256:<hex>", ...]}}')
        return cls(raw)

    def tenant_for(self, key: str) -> str | None:
        """The tenant ``key`` belongs to, or None for an unknown key."""
        wanted = key_hash(key)
        found = None
        for entry, tenant in self._by_hash.items():
            if hmac.compare_digest(entry, wanted):
                found = tenant
        return found

    @staticmethod
    def add(path: Path, tenant: str) -> str:
        """Make a key for ``tenant``, store its hash in ``path`` (created if missing); return it."""
        if not _TENANT.fullmatch(tenant):
            raise ApiKeysError(f"bad tenant name {tenant!r}")
        tenants: dict[str, list[str]] = {}
        if path.exists():
            ApiKeys.load(path)  # refuse to extend a malformed file
            tenants = json.loads(path.read_text(encoding="utf-8"))
        key = new_key()
        tenants.setdefault(tenant, []).append(key_hash(key))
        path.write_text(json.dumps(tenants, indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return key
