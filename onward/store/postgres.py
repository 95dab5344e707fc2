"""The store for workers on several machines: PostgreSQL (``ONWARD_STORE=postgresql://...``).

The database a Temporal deployment usually already runs. One table holds
every transcript; a write is an upsert per position, so retries and
concurrent workers converge on the last completed write.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from onward.store.base import Kind, StoreError, check_transcript_id

__all__ = ["POOL_SIZE", "PostgresStore"]

POOL_SIZE = 8
"""Connections one worker keeps open at most (activities run concurrently)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS onward_transcript (
    transcript text NOT NULL,
    kind text NOT NULL,
    position integer NOT NULL,
    document jsonb NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transcript, kind, position)
)
"""
_UPSERT = """
INSERT INTO onward_transcript (transcript, kind, position, document)
VALUES (%s, %s, %s, %s::jsonb)
ON CONFLICT (transcript, kind, position)
DO UPDATE SET document = EXCLUDED.document, written_at = now()
"""
_READ = """
SELECT position, document::text FROM onward_transcript
WHERE transcript = %s AND kind = %s AND position >= %s AND position < %s
ORDER BY position
"""


class PostgresStore:
    """A :class:`~onward.store.base.StoreBackend` in PostgreSQL; create it with :meth:`open`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = POOL_SIZE) -> PostgresStore:
        """Connect and create the table if it is missing (idempotent)."""
        pool = AsyncConnectionPool(url, min_size=1, max_size=pool_size, open=False)
        try:
            await pool.open(wait=True, timeout=10)
            async with pool.connection() as conn:
                await conn.execute(_SCHEMA)
        except (psycopg.Error, TimeoutError) as err:
            await pool.close()
            raise StoreError(f"cannot use the PostgreSQL store: {err}") from err
        return cls(pool)

    async def write(
        self, transcript: str, kind: Kind, start: int, documents: Sequence[bytes]
    ) -> None:
        if start < 0:
            raise ValueError(f"position must be >= 0, not {start}")
        check_transcript_id(transcript)
        rows = [
            (transcript, kind, start + index, document.decode())
            for index, document in enumerate(documents)
        ]
        if not rows:
            return
        try:
            async with self._pool.connection() as conn, conn.cursor() as cursor:
                await cursor.executemany(_UPSERT, rows)
        except psycopg.Error as err:
            raise StoreError(f"cannot write to the PostgreSQL store: {err}") from err

    async def read(
        self, transcript: str, kind: Kind, start: int = 0, stop: int | None = None
    ) -> list[bytes]:
        check_transcript_id(transcript)
        upper = 2**31 - 1 if stop is None else stop
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_READ, (transcript, kind, start, upper))
                rows = await cursor.fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot read the PostgreSQL store: {err}") from err
        found: list[bytes] = []
        for position, document in rows:
            if position != start + len(found):
                break  # a gap: what follows is not part of the sequence yet
            found.append(document.encode())
        return found

    async def length(self, transcript: str, kind: Kind) -> int:
        return len(await self.read(transcript, kind))

    async def close(self) -> None:
        await self._pool.close()
