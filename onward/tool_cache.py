"""The opt-in tool-result cache: an identical call within its TTL gets the earlier result.

A tool opts in with ``@tool(cache_ttl_s=...)``, or a run with its input's
``cache_tools`` (``{"tool_name": ttl_s}``, carried to the activity on the
``ToolRequest``). Calls are identical when the tool name, the arguments (as
canonical JSON: sorted keys, no spaces) and the tenant are: one tenant never
reads another's results. A tool that takes a ``ToolContext`` may read its
run's workspace and memory, so its calls are also keyed by its ``scope`` (the
workspace and memory scope): one run never reads a result made of another
run's files. Entries live in the transcript store's backend (a
local directory or PostgreSQL), sealed like transcripts when encryption is on,
so every worker sharing the store shares the cache.

The lookup and the write happen inside the tool activity: only successful
results are kept, and a store failure never fails a call (it runs uncached).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from onward.contracts import ToolOutcome
from onward.store import TranscriptStore

__all__ = ["ToolCache", "ToolCacheEntry", "cache_key"]


def cache_key(
    name: str,
    arguments: Mapping[str, Any],
    tenant: str | None,
    scope: Mapping[str, str] | None = None,
) -> str:
    """The store key of a call: a hash of tenant, tool name and canonical JSON arguments,
    and of the ``scope`` its result depends on, when it has one (keys without one are
    those of earlier releases)."""
    call: dict[str, Any] = {"tenant": tenant, "tool": name, "arguments": arguments}
    if scope:
        call["scope"] = scope
    canonical = json.dumps(
        call,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return "tool-cache." + hashlib.sha256(canonical.encode()).hexdigest()


class ToolCacheEntry(BaseModel):
    """One kept result and when it was kept (seconds since the epoch, the worker's clock)."""

    stored_at: float
    outcome: ToolOutcome


class ToolCache:
    """Tool results by call, kept in ``store`` for their TTL.

    Args:
        store: the worker's transcript store.
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, store: TranscriptStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def get(
        self,
        name: str,
        arguments: Mapping[str, Any],
        tenant: str | None,
        ttl_s: float,
        scope: Mapping[str, str] | None = None,
    ) -> ToolOutcome | None:
        """The result of an identical call kept less than ``ttl_s`` ago, marked a hit; else None."""
        raw = await self._store.get_cached(cache_key(name, arguments, tenant, scope))
        if raw is None:
            return None
        try:
            entry = ToolCacheEntry.model_validate_json(raw)
        except ValidationError:
            return None  # written by an incompatible version: treat as a miss
        if self._clock() - entry.stored_at >= ttl_s:
            return None
        return entry.outcome.model_copy(update={"cache_hit": True})

    async def put(
        self,
        name: str,
        arguments: Mapping[str, Any],
        tenant: str | None,
        outcome: ToolOutcome,
        scope: Mapping[str, str] | None = None,
    ) -> None:
        """Keep a successful ``outcome`` (errors are never kept: the next call retries)."""
        if outcome.error is not None:
            return
        kept = outcome.model_copy(update={"call_id": None, "step": None, "cache_hit": False})
        entry = ToolCacheEntry(stored_at=self._clock(), outcome=kept)
        await self._store.put_cached(
            cache_key(name, arguments, tenant, scope), entry.model_dump_json().encode()
        )
