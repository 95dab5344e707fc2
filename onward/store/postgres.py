"""The store for workers on several machines: PostgreSQL (``ONWARD_STORE=postgresql://...``).

The database a Temporal deployment usually already runs. One table holds
every transcript; a write is an upsert per position, so retries and
concurrent workers converge on the last completed write. Memory
(``remember``/``recall``) is one row per (tenant, scope, key), and run
workspaces are kept here too, one row per file, so a file written on one
machine is read, listed and fetched from any other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from onward.contracts import Artifact
from onward.store.base import MAX_AHEAD_S, Kind, StoreError, check_transcript_id
from onward.store.pgurl import misread_password, redacted, scrubbed

__all__ = ["POOL_SIZE", "PROBE_TIMEOUT_S", "PostgresStore", "redacted"]

log = logging.getLogger("onward.store")

POOL_SIZE = 8
"""Connections one worker keeps open at most (activities run concurrently)."""

_TABLES = {
    "onward_transcript": """
CREATE TABLE IF NOT EXISTS onward_transcript (
    transcript text NOT NULL,
    kind text NOT NULL,
    position integer NOT NULL,
    document json NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transcript, kind, position)
)""",
    "onward_memory": """
CREATE TABLE IF NOT EXISTS onward_memory (
    tenant text NOT NULL,
    scope text NOT NULL,
    key_id text NOT NULL,
    document json NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, scope, key_id)
)""",
    "onward_file": """
CREATE TABLE IF NOT EXISTS onward_file (
    workspace text NOT NULL,
    path text NOT NULL,
    content bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, path)
)""",
    "onward_rate_limit": """
CREATE TABLE IF NOT EXISTS onward_rate_limit (
    key text PRIMARY KEY,
    scheduled double precision NOT NULL
)""",
    "onward_file_call": """
CREATE TABLE IF NOT EXISTS onward_file_call (
    workspace text NOT NULL,
    call text NOT NULL,
    result text NOT NULL,
    PRIMARY KEY (workspace, call)
)""",
}
"""Each table and how it is made: only a missing one is, so a role without CREATE
on the schema uses tables its owner made (PostgreSQL checks CREATE before IF NOT EXISTS).

Documents are ``json``, which keeps their text as written: ``jsonb`` refuses a
``\\u0000`` escape (a NUL in a tool result or a binary file read), and they are
only ever read back whole (``document::text``). Their values are sent untyped,
so a ``jsonb`` column not migrated yet (see :func:`_migrate_documents`) still takes them.
"""
_DOCUMENT_TABLES = ("onward_transcript", "onward_memory")
_SCHEMA_LOCK = 7_312_026
"""Advisory lock id: workers starting at once create the tables one after another."""
_UPSERT = """
INSERT INTO onward_transcript (transcript, kind, position, document)
VALUES (%s, %s, %s, %s)
ON CONFLICT (transcript, kind, position)
DO UPDATE SET document = EXCLUDED.document, written_at = now()
"""
_READ = """
SELECT position, document::text FROM onward_transcript
WHERE transcript = %s AND kind = %s AND position >= %s AND position < %s
ORDER BY position
"""


PROBE_TIMEOUT_S = 10
"""How long the first connection may take before the store is said unreachable."""


_LATER_TABLES = frozenset({"onward_rate_limit"})
"""Tables added after the first release: a role that may not create them still starts
(its owner's next start of a worker makes them); only what needs them fails."""


async def _create_missing(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the tables that are not there (under the schema lock), and no other."""
    for table, create in _TABLES.items():
        cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        found = await cursor.fetchone()
        if found and found[0]:
            continue
        if table not in _LATER_TABLES:
            await conn.execute(create)
            continue
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the rest standing
                await conn.execute(create)
        except psycopg.errors.InsufficientPrivilege:
            log.warning(
                "%s is missing and this role may not create it: shared rate limits "
                "(ONWARD_RATE_LIMITS) cannot be kept until the schema's owner starts a worker "
                "of this version, or creates it",
                table,
            )


async def _migrate_documents(conn: psycopg.AsyncConnection[Any]) -> None:
    """Turn a ``jsonb`` document column (made by earlier versions) into ``json``, once.

    ``ALTER ... TYPE`` rewrites the table under an exclusive lock, once; a role
    that does not own the table leaves it as it is (documents with a NUL still
    fail there) and says so, and its owner's next start migrates it.
    """
    for table in _DOCUMENT_TABLES:
        cursor = await conn.execute(_DOCUMENT_TYPE, (table,))
        found = await cursor.fetchone()
        if not found or found[0] != "jsonb":
            continue
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the rest standing
                await conn.execute(
                    sql.SQL(
                        "ALTER TABLE {} ALTER COLUMN document TYPE json USING document::json"
                    ).format(sql.Identifier(table))
                )
        except psycopg.errors.InsufficientPrivilege:
            log.warning(
                "%s.document is jsonb, which refuses a NUL (\\u0000) in a document; "
                "this role may not change it: the table owner's next start of a worker "
                "makes it json",
                table,
            )
            continue
        log.info("migrated %s.document from jsonb to json (it takes a NUL, \\u0000)", table)


class PostgresStore:
    """A :class:`~onward.store.base.StoreBackend` in PostgreSQL; create it with :meth:`open`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = POOL_SIZE) -> PostgresStore:
        """Connect and create the tables that are missing (idempotent).

        Raises:
            StoreError: the URL is malformed, or PostgreSQL cannot be reached or used;
                the message says why (never the password).
        """
        if misread_password(url):
            raise StoreError(
                f"cannot use the PostgreSQL store {redacted(url)} (ONWARD_STORE): its password "
                "holds a character to percent-encode ('/' as %2F, '@' as %40, '%' as %25)"
            )
        try:
            # One connection first: a pool that cannot fill says only that it timed out.
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=PROBE_TIMEOUT_S)
            await probe.close()
        except psycopg.Error as err:
            reason = scrubbed(str(err), url).strip()
            raise StoreError(
                f"cannot use the PostgreSQL store {redacted(url)} (ONWARD_STORE): {reason}"
            ) from err
        pool = AsyncConnectionPool(url, min_size=1, max_size=pool_size, open=False)
        try:
            await pool.open(wait=True, timeout=10)
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                await _create_missing(conn)
                await _migrate_documents(conn)
        except (psycopg.Error, TimeoutError) as err:
            await pool.close()
            raise StoreError(f"cannot use the PostgreSQL store: {scrubbed(str(err), url)}") from err
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
            async with self._pool.connection() as conn, conn.pipeline(), conn.cursor() as cursor:
                # Shared with other writers, exclusive to prune-store (see delete_transcript);
                # sent with the rows in one round trip.
                await cursor.execute(_SHARE, (_transcript_lock(transcript),))
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

    # -- memory -----------------------------------------------------------------------

    async def put_memory(self, tenant: str, scope: str, key_id: str, document: bytes) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(_PUT_MEMORY, (tenant, scope, key_id, document.decode()))
        except psycopg.Error as err:
            raise StoreError(f"cannot write memory to the PostgreSQL store: {err}") from err

    async def memory_documents(self, tenant: str, scope: str) -> list[bytes]:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_READ_MEMORY, (tenant, scope))
                rows = await cursor.fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot read memory from the PostgreSQL store: {err}") from err
        return [document.encode() for (document,) in rows]

    # -- shared rate limits ---------------------------------------------------------------

    async def advance(self, key: str, add_s: float, hold_s: float = 0.0) -> float:
        """Move ``key``'s schedule ``add_s`` past the later of itself and now, and to at
        least ``hold_s`` past now; return how far ahead of now it then runs.

        One statement on one row, which PostgreSQL locks while it updates it, so
        workers on every machine keep one schedule, by the database's clock.
        """
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(
                    _ADVANCE, {"key": key, "add": add_s, "hold": hold_s, "cap": MAX_AHEAD_S}
                )
                row = await cursor.fetchone()
        except psycopg.Error as err:
            raise StoreError(f"cannot keep the rate limit in the PostgreSQL store: {err}") from err
        assert row is not None
        return float(row[0])

    # -- run workspaces -----------------------------------------------------------------

    async def write_file(
        self, workspace: str, path: str, data: bytes, *, append: bool, call: str, result: str
    ) -> str:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(_SHARE, (_workspace_lock(workspace),))
                # The call's record first: a concurrent attempt of the same call waits
                # here for this transaction, then finds the record and writes nothing.
                cursor = await conn.execute(_CLAIM_CALL, (workspace, call, result))
                if cursor.rowcount == 0:
                    cursor = await conn.execute(_CALL_RESULT, (workspace, call))
                    found = await cursor.fetchone()
                    return str(found[0]) if found else result
                await conn.execute(_APPEND_FILE if append else _PUT_FILE, (workspace, path, data))
        except psycopg.Error as err:
            raise StoreError(f"cannot write {path!r} to the PostgreSQL store: {err}") from err
        return result

    async def read_file(self, workspace: str, path: str) -> bytes | None:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_READ_FILE, (workspace, path))
                row = await cursor.fetchone()
        except psycopg.Error as err:
            raise StoreError(f"cannot read {path!r} from the PostgreSQL store: {err}") from err
        return None if row is None else bytes(row[0])

    async def list_files(self, workspace: str) -> list[Artifact]:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_LIST_FILES, (workspace,))
                rows = await cursor.fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot list files in the PostgreSQL store: {err}") from err
        return [Artifact(path=path, size=size, sha256=digest) for path, size, digest in rows]

    # -- pruning ------------------------------------------------------------------------

    async def _stale(self, query: str, older_than: timedelta) -> list[str]:
        try:
            async with self._pool.connection() as conn:
                rows = await (await conn.execute(query, (older_than,))).fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot list the PostgreSQL store: {err}") from err
        return [str(name) for (name,) in rows]

    async def stale_transcripts(self, older_than: timedelta) -> list[str]:
        return await self._stale(_STALE_TRANSCRIPTS, older_than)

    async def delete_transcript(self, transcript: str, older_than: timedelta) -> bool:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # A write under way (it holds the lock shared) commits first and is
                # seen; one that comes after waits, and writes into a new transcript.
                await conn.execute(_EXCLUSIVE, (_transcript_lock(transcript),))
                cursor = await conn.execute(
                    _DELETE_TRANSCRIPT, (transcript, transcript, older_than)
                )
                return cursor.rowcount > 0
        except psycopg.Error as err:
            raise StoreError(f"cannot delete from the PostgreSQL store: {err}") from err

    async def stale_workspaces(self, older_than: timedelta) -> list[str]:
        return await self._stale(_STALE_WORKSPACES, older_than)

    async def delete_workspace(self, workspace: str, older_than: timedelta) -> bool:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(_EXCLUSIVE, (_workspace_lock(workspace),))
                cursor = await conn.execute(_DELETE_FILES, (workspace, workspace, older_than))
                if cursor.rowcount == 0:
                    return False
                await conn.execute(_DELETE_FILE_CALLS, (workspace,))
                return True
        except psycopg.Error as err:
            raise StoreError(f"cannot delete from the PostgreSQL store: {err}") from err

    async def file_paths(self, workspace: str) -> list[str]:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_FILE_PATHS, (workspace,))
                rows = await cursor.fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot list files in the PostgreSQL store: {err}") from err
        return [str(path) for (path,) in rows]


_ADVANCE = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
INSERT INTO onward_rate_limit AS r (key, scheduled)
SELECT %(key)s, now + greatest(%(add)s, %(hold)s) FROM clock
ON CONFLICT (key) DO UPDATE SET scheduled = (
    SELECT greatest(greatest(least(r.scheduled, now + %(cap)s), now) + %(add)s, now + %(hold)s)
    FROM clock
)
RETURNING scheduled - (SELECT now FROM clock)
"""
_PUT_MEMORY = """
INSERT INTO onward_memory (tenant, scope, key_id, document) VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant, scope, key_id)
DO UPDATE SET document = EXCLUDED.document, written_at = now()
"""
_READ_MEMORY = """
SELECT document::text FROM onward_memory WHERE tenant = %s AND scope = %s ORDER BY key_id
"""
_CLAIM_CALL = """
INSERT INTO onward_file_call (workspace, call, result) VALUES (%s, %s, %s)
ON CONFLICT (workspace, call) DO NOTHING
"""
_CALL_RESULT = "SELECT result FROM onward_file_call WHERE workspace = %s AND call = %s"
_PUT_FILE = """
INSERT INTO onward_file (workspace, path, content) VALUES (%s, %s, %s)
ON CONFLICT (workspace, path) DO UPDATE SET content = EXCLUDED.content, written_at = now()
"""
_APPEND_FILE = """
INSERT INTO onward_file (workspace, path, content) VALUES (%s, %s, %s)
ON CONFLICT (workspace, path)
DO UPDATE SET content = onward_file.content || EXCLUDED.content, written_at = now()
"""
_READ_FILE = "SELECT content FROM onward_file WHERE workspace = %s AND path = %s"
_FILE_PATHS = "SELECT path FROM onward_file WHERE workspace = %s ORDER BY path"
_LIST_FILES = """
SELECT path, length(content), encode(sha256(content), 'hex') FROM onward_file
WHERE workspace = %s ORDER BY path
"""
_DOCUMENT_TYPE = """
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = to_regclass(%s) AND attname = 'document' AND NOT attisdropped
"""
_SHARE = "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))"
_EXCLUSIVE = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _transcript_lock(transcript: str) -> str:
    """The advisory lock of a transcript's rows: writers share it, a prune takes it alone."""
    return f"onward transcript {transcript}"


def _workspace_lock(workspace: str) -> str:
    return f"onward workspace {workspace}"


_STALE_TRANSCRIPTS = """
SELECT transcript FROM onward_transcript GROUP BY transcript
HAVING max(written_at) < now() - %s::interval ORDER BY transcript
"""
_DELETE_TRANSCRIPT = """
DELETE FROM onward_transcript WHERE transcript = %s AND NOT EXISTS (
    SELECT 1 FROM onward_transcript WHERE transcript = %s AND written_at >= now() - %s::interval
)
"""
_STALE_WORKSPACES = """
SELECT workspace FROM onward_file GROUP BY workspace
HAVING max(written_at) < now() - %s::interval ORDER BY workspace
"""
_DELETE_FILES = """
DELETE FROM onward_file WHERE workspace = %s AND NOT EXISTS (
    SELECT 1 FROM onward_file WHERE workspace = %s AND written_at >= now() - %s::interval
)
"""
_DELETE_FILE_CALLS = "DELETE FROM onward_file_call WHERE workspace = %s"
