"""Memory across runs and sessions: what ``remember`` saved, and how ``recall`` ranks it.

A memory is a ``key`` and a ``text``, kept in the store (``ONWARD_STORE``) in
one space per tenant and memory scope, so a later run of the same tenant and
scope finds it and no other tenant ever does. Remembering a key again
replaces it. Recall ranks every memory of the space by BM25 over its key and
text and returns the best few: plain functions over plain data, here, so the
ranking is tested without a store.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from onward.store import TranscriptStore

__all__ = [
    "DEFAULT_MEMORY_SCOPE",
    "RECALL_LIMIT",
    "Memory",
    "MemoryEntry",
    "rank",
    "tokens",
]

DEFAULT_MEMORY_SCOPE = "shared"
"""The scope of a run whose input names no ``memory_scope``: the tenant's shared memory."""
RECALL_LIMIT = 5
"""Memories ``recall`` returns at most, best first."""
NO_TENANT = ""
"""The tenant of runs that name none (a single-user worker): a space of its own."""

_K1 = 1.2
_B = 0.75
_KEY_WEIGHT = 2
"""A word of the key counts this many times: a key names what the memory is about."""
_WORD = re.compile(r"\w+", re.UNICODE)


class MemoryEntry(BaseModel):
    """One remembered fact: the document the store keeps (sealed, with encryption on)."""

    key: str = Field(min_length=1, max_length=200)
    text: str


def tokens(text: str) -> list[str]:
    """Lower-cased words (letters, digits, underscores), in order."""
    return [word.lower() for word in _WORD.findall(text)]


def _terms(entry: MemoryEntry) -> list[str]:
    return tokens(entry.key) * _KEY_WEIGHT + tokens(entry.text)


def rank(
    entries: Sequence[MemoryEntry], query: str, limit: int = RECALL_LIMIT
) -> list[MemoryEntry]:
    """The ``limit`` entries most relevant to ``query`` by BM25, best first.

    Entries sharing no word with the query are left out; ties keep key order,
    so the answer is the same every time.
    """
    wanted = set(tokens(query))
    if not wanted or not entries:
        return []
    documents = [Counter(_terms(entry)) for entry in entries]
    lengths = [sum(document.values()) for document in documents]
    average = sum(lengths) / len(lengths) or 1.0
    count = len(documents)
    idf = {
        term: math.log(1 + (count - found + 0.5) / (found + 0.5))
        for term in wanted
        for found in [sum(1 for document in documents if term in document)]
    }
    scored: list[tuple[float, str, MemoryEntry]] = []
    for entry, document, length in zip(entries, documents, lengths, strict=True):
        score = 0.0
        for term in wanted:
            frequency = document.get(term, 0)
            if frequency:
                norm = frequency + _K1 * (1 - _B + _B * length / average)
                score += idf[term] * frequency * (_K1 + 1) / norm
        if score > 0:
            scored.append((score, entry.key, entry))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [entry for _, _, entry in scored[:limit]]


@dataclass(frozen=True)
class Memory:
    """One tenant's memory scope in a store: what a tool call's ``ctx.memory`` is.

    ``tenant`` None is the runs that name no tenant; they share a space of
    their own, which no named tenant sees.
    """

    store: TranscriptStore
    tenant: str | None
    scope: str

    async def remember(self, key: str, text: str) -> None:
        """Keep ``text`` under ``key``, replacing what the key held (idempotent)."""
        await self.store.remember(self._tenant, self.scope, MemoryEntry(key=key, text=text))

    async def recall(self, query: str, limit: int = RECALL_LIMIT) -> list[MemoryEntry]:
        """The memories most relevant to ``query``, best first."""
        return rank(await self.store.memories(self._tenant, self.scope), query, limit)

    @property
    def _tenant(self) -> str:
        return NO_TENANT if self.tenant is None else self.tenant
