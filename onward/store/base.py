"""What every transcript store backend does: numbered JSON documents per transcript.

A transcript is one run's (or one session's) record kept outside Temporal's
event history: its messages and its step log, each a sequence of JSON
documents numbered from 0 (messages) or 1 (steps). Writing a document at a
position that already holds one replaces it, so a retried activity that
writes the same documents again changes nothing, and an attempt that
completed after an earlier, abandoned one has the last word.

Backends store bytes and know nothing of the contract models;
:class:`onward.store.TranscriptStore` puts the types on top.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal, Protocol

__all__ = ["Kind", "StoreBackend", "StoreError", "check_transcript_id", "transcript_id"]

Kind = Literal["messages", "steps", "cache"]
"""The sequences a transcript holds; ``cache`` is the one entry of a tool-cache key
(:mod:`onward.tool_cache`), kept in the same backend as the transcripts."""

_TRANSCRIPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@=+-]{0,254}")
"""Workflow ids are free text; a transcript id also names a directory, so it is kept plain."""


class StoreError(Exception):
    """The transcript store cannot be reached or refused an operation."""


def check_transcript_id(transcript: str) -> str:
    """Return ``transcript`` if it is a usable id; ValueError says why not."""
    if not _TRANSCRIPT_ID.fullmatch(transcript) or ".." in transcript:
        raise ValueError(
            f"bad transcript id {transcript!r}: use 1-255 letters, digits and ._:@=+- "
            "(starting with a letter or digit)"
        )
    return transcript


def transcript_id(workflow_id: str, first_run_id: str) -> str:
    """The transcript of a run: the same across continue-as-new, new for a reused workflow id.

    ``workflow_id@first_run_id`` when that is a usable id, else its SHA-256 (workflow
    ids are free text). Pure, so the workflow and every reader derive the same id.
    """
    plain = f"{workflow_id}@{first_run_id}"
    try:
        return check_transcript_id(plain)
    except ValueError:
        return "sha256-" + hashlib.sha256(plain.encode()).hexdigest()


class StoreBackend(Protocol):
    """Numbered documents per (transcript, kind); positions are written idempotently."""

    async def write(
        self, transcript: str, kind: Kind, start: int, documents: Sequence[bytes]
    ) -> None:
        """Put ``documents`` at positions ``start``, ``start + 1``, ... (replacing any there)."""
        ...

    async def read(
        self, transcript: str, kind: Kind, start: int = 0, stop: int | None = None
    ) -> list[bytes]:
        """The documents at positions ``start`` up to ``stop`` (None: all), in order.

        A gap (a position never written) ends the answer: what follows a gap
        was written out of order and is not yet part of the sequence.
        """
        ...

    async def length(self, transcript: str, kind: Kind) -> int:
        """How many positions from ``0`` are written without a gap."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
