"""The transcript store: the same tests on a local directory and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg_pool
import pytest
import pytest_asyncio
from postgres_server import postgres_url
from psycopg.conninfo import conninfo_to_dict

from onward.activities.rate_limits import RateLimit, RateLimits
from onward.contracts import Message, StepRecord, ToolCall
from onward.encryption import EncryptionCodec, parse_keys
from onward.memory import MemoryEntry
from onward.store import LocalStore, StoreError, TranscriptStore, open_store
from onward.store.base import RateBackend, unreachable
from onward.store.local import INLINE_IO_BYTES
from onward.store.postgres import redacted

__all__ = ["postgres_url"]  # the fixture, imported for the tests below


@pytest_asyncio.fixture(params=["local", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TranscriptStore]:
    if request.param == "local":
        opened = await open_store(str(tmp_path / "store"))
    else:
        opened = await open_store(request.getfixturevalue("postgres_url"))
    try:
        yield opened
    finally:
        await opened.close()


def transcript() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def user(text: str) -> Message:
    return Message(role="user", content=text)


def step(number: int, text: str) -> StepRecord:
    return StepRecord(step=number, text=text, started_at=datetime(2026, 12, 2, tzinfo=UTC))


async def test_messages_round_trip_in_order(store: TranscriptStore) -> None:
    tid = transcript()
    call = ToolCall(id="call_1_1", name="calculator", arguments={"expression": "2+2"})
    sent = [
        Message(role="system", content="be brief"),
        user("what is 2+2?"),
        Message(role="assistant", content="let me compute", tool_calls=[call]),
        Message(role="tool", content="4", tool_call_id="call_1_1", name="calculator"),
    ]
    await store.write_messages(tid, 0, sent[:2])
    await store.write_messages(tid, 2, sent[2:])
    assert await store.messages(tid) == sent
    assert await store.messages(tid, 1, 3) == sent[1:3]
    assert await store.count(tid, "messages") == 4


async def test_a_retried_write_changes_nothing(store: TranscriptStore) -> None:
    tid = transcript()
    first = [user(f"message {n}") for n in range(3)]
    await store.write_messages(tid, 0, first)
    await store.write_messages(tid, 1, first[1:])  # an activity retry writes its part again
    await store.write_messages(tid, 0, first)
    assert await store.messages(tid) == first
    assert await store.count(tid, "messages") == 3


async def test_a_later_attempt_replaces_an_abandoned_one(store: TranscriptStore) -> None:
    tid = transcript()
    await store.write_messages(tid, 0, [user("prompt"), user("reply of attempt 1")])
    await store.write_messages(tid, 1, [user("reply of attempt 2")])
    assert [m.content for m in await store.messages(tid)] == ["prompt", "reply of attempt 2"]


async def test_a_gap_ends_the_sequence(store: TranscriptStore) -> None:
    tid = transcript()
    await store.write_messages(tid, 0, [user("0"), user("1")])
    await store.write_messages(tid, 3, [user("3")])  # position 2 not written yet
    assert [m.content for m in await store.messages(tid)] == ["0", "1"]
    assert await store.count(tid, "messages") == 2
    await store.write_messages(tid, 2, [user("2")])
    assert [m.content for m in await store.messages(tid)] == ["0", "1", "2", "3"]


async def test_steps_by_number(store: TranscriptStore) -> None:
    tid = transcript()
    await store.write_steps(tid, [step(1, "first"), step(2, "second")])
    await store.write_steps(tid, [step(2, "second, rewritten"), step(3, "third")])
    assert [s.text for s in await store.steps(tid)] == ["first", "second, rewritten", "third"]
    assert [s.step for s in await store.steps(tid, 2, 3)] == [2, 3]
    assert await store.count(tid, "steps") == 3
    assert await store.steps(transcript()) == []


async def test_concurrent_writers_lose_nothing(store: TranscriptStore) -> None:
    tid = transcript()
    await asyncio.gather(
        *(store.write_messages(tid, n, [user(f"m{n}")]) for n in range(40)),
        *(store.write_steps(tid, [step(n, f"s{n}")]) for n in range(1, 21)),
    )
    assert [m.content for m in await store.messages(tid)] == [f"m{n}" for n in range(40)]
    assert [s.text for s in await store.steps(tid)] == [f"s{n}" for n in range(1, 21)]


async def test_transcripts_are_separate(store: TranscriptStore) -> None:
    one, two = transcript(), transcript()
    await store.write_messages(one, 0, [user("one")])
    await store.write_messages(two, 0, [user("two")])
    assert [m.content for m in await store.messages(one)] == ["one"]
    assert [m.content for m in await store.messages(two)] == ["two"]


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", "a b", "x" * 300, ".hidden"])
async def test_bad_transcript_ids_are_refused(store: TranscriptStore, bad: str) -> None:
    with pytest.raises(ValueError, match="bad transcript id"):
        await store.write_messages(bad, 0, [user("x")])


async def test_local_store_survives_a_torn_line_and_sees_other_writers(tmp_path: Path) -> None:
    root = tmp_path / "store"
    writer, reader = TranscriptStore(LocalStore(root)), TranscriptStore(LocalStore(root))
    tid = transcript()
    await writer.write_messages(tid, 0, [user("before the crash")])
    assert [m.content for m in await reader.messages(tid)] == ["before the crash"]
    with (root / tid / "messages.log").open("ab") as file:
        file.write(b'1\t{"role": "user", "cont')  # a worker killed mid-append
    assert await reader.count(tid, "messages") == 1
    await writer.write_messages(tid, 1, [user("after the crash")])
    # The reader read up to the torn line before; it still sees the new message.
    assert [m.content for m in await reader.messages(tid)] == [
        "before the crash",
        "after the crash",
    ]


async def test_local_stores_taking_turns_on_one_transcript_each_see_every_write(
    tmp_path: Path,
) -> None:
    # A run moving between two workers: each keeps what it appended as read, but only
    # when it had read the file to the end, so the other's lines are never skipped.
    root = tmp_path / "store"
    first, second = TranscriptStore(LocalStore(root)), TranscriptStore(LocalStore(root))
    tid = transcript()
    await first.write_messages(tid, 0, [user("0")])
    assert [m.content for m in await first.messages(tid)] == ["0"]
    await second.write_messages(tid, 1, [user("1")])
    await first.write_messages(tid, 2, [user("2")])
    await second.write_messages(tid, 3, [user("3")])
    for store in (first, second):
        assert [m.content for m in await store.messages(tid)] == ["0", "1", "2", "3"]
    await first.write_messages(tid, 4, [user("4")])
    await second.write_messages(tid, 5, [user("5")])
    for store in (second, first):
        assert [m.content for m in await store.messages(tid)] == ["0", "1", "2", "3", "4", "5"]


async def test_local_store_reads_and_writes_large_and_small_alike(tmp_path: Path) -> None:
    # Small reads and writes run on the event loop, large ones in a thread; one reader
    # sees both, in order, whichever way each went.
    root = tmp_path / "store"
    writer, reader = TranscriptStore(LocalStore(root)), TranscriptStore(LocalStore(root))
    tid = transcript()
    large = "x" * (INLINE_IO_BYTES + 1)
    await writer.write_messages(tid, 0, [user("small")])
    assert [m.content for m in await reader.messages(tid)] == ["small"]
    await writer.write_messages(tid, 1, [user(large)])
    await writer.write_messages(tid, 2, [user("small again")])
    assert [m.content for m in await reader.messages(tid)] == ["small", large, "small again"]
    fresh = TranscriptStore(LocalStore(root))  # reads the whole file at once
    assert [m.content for m in await fresh.messages(tid, 1)] == [large, "small again"]


async def test_open_store_by_url(tmp_path: Path) -> None:
    by_path = await open_store(str(tmp_path / "a"))
    by_url = await open_store(f"file://{tmp_path / 'a'}")
    tid = transcript()
    await by_path.write_messages(tid, 0, [user("hello")])
    assert [m.content for m in await by_url.messages(tid)] == ["hello"]


@pytest.mark.parametrize(
    "url", ["postgresql://onward:s3cret@[::1/onward", "postgresql://onward:s3cret@::bad/onward"]
)
async def test_a_malformed_postgresql_url_says_why_without_its_password(url: str) -> None:
    with pytest.raises(StoreError, match=r"\(ONWARD_STORE\)") as caught:
        await open_store(url)
    assert "s3cret" not in str(caught.value) and "onward:***@" in str(caught.value)


async def test_unreachable_postgresql_is_a_store_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket closes
    with pytest.raises(StoreError, match="cannot use the PostgreSQL store"):
        await open_store(f"postgresql://onward@127.0.0.1:{port}/postgres?connect_timeout=2")


SECRET_FORMS = [
    "postgresql:///postgres?host=127.0.0.1&port={port}&user=onward&password=TOPSECRET",
    "postgresql://onward:TOP%SECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP%zzSECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP/SECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP@SECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP?SECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP%2FSECRET@127.0.0.1:{port}/postgres",
    "postgresql://onward:TOP?SECRET@127.0.0.1:{port}/postgres?password=TOPSECRET",
    "postgresql://onward@127.0.0.1:{port}/postgres?sslpassword=TOPSECRET",
]
"""Every way a URL may hold a password; its parts, TOP and SECRET, must never show."""


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=db user=onward password=TOPSECRET dbname=onward",
        "host=db user=onward password='TOP SECRET' dbname=onward",
        "host=db user=onward password='TOP SECRET dbname=onward",  # unparsable
    ],
)
def test_a_key_value_password_is_redacted(conninfo: str) -> None:
    shown = redacted(conninfo)
    assert "TOP" not in shown and "SECRET" not in shown and "password=***" in shown


@pytest.mark.parametrize("form", SECRET_FORMS)
async def test_a_password_never_shows_in_any_form_of_url(form: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens: the connection fails
    url = form.format(port=port)
    shown = redacted(url)
    assert "TOP" not in shown and "SECRET" not in shown and "***" in shown
    with pytest.raises(StoreError, match=r"PostgreSQL store") as caught:
        await open_store(url)
    assert "TOP" not in str(caught.value) and "SECRET" not in str(caught.value)


async def test_libpq_quoting_a_password_is_scrubbed() -> None:
    # libpq's own reason quotes the whole token: invalid percent-encoded token: "PW%zz"
    with pytest.raises(StoreError, match="percent-encoded") as caught:
        await open_store("postgresql://onward:PW%zz@127.0.0.1/postgres")
    assert "PW%zz" not in str(caught.value) and "PW" not in str(caught.value)


@pytest.mark.parametrize("password", ["TOP/SECRET", "TOP@SECRET"])
async def test_a_password_libpq_would_misread_is_refused_saying_what_to_encode(
    password: str,
) -> None:
    with pytest.raises(StoreError, match="percent-encode") as caught:
        await open_store(f"postgresql://onward:{password}@127.0.0.1/postgres")
    assert "TOP" not in str(caught.value) and "SECRET" not in str(caught.value)


async def test_an_at_sign_in_the_database_name_is_no_password_of_it(postgres_url: str) -> None:
    # libpq reads postgresql://u:pw@host/team@corp as database team@corp: it is refused
    # as a misread password no more, and its host is shown.
    reading = conninfo_to_dict(postgres_url)
    url = f"postgresql://onward:pw@{reading['host']}:{reading['port']}/team@corp"
    assert redacted(url) == f"postgresql://onward:***@{reading['host']}:{reading['port']}/team@corp"
    with pytest.raises(StoreError, match='database "team@corp" does not exist'):
        await open_store(url)


async def test_a_query_string_password_opens_the_store_and_is_shown_masked(
    postgres_url: str,
) -> None:
    reading = conninfo_to_dict(postgres_url)
    url = (
        f"postgresql:///{reading['dbname']}?host={reading['host']}&port={reading['port']}"
        f"&user={reading['user']}&password=TOPSECRET"  # trust auth takes any password
    )
    opened = await open_store(url)
    await opened.close()
    assert redacted(url).endswith("&password=***")


async def test_a_role_without_create_uses_the_tables_their_owner_made(postgres_url: str) -> None:
    owner_url = await database(postgres_url)
    name = f"dml_{uuid.uuid4().hex[:8]}"
    await (await open_store(owner_url)).close()  # the owner makes the tables
    async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as owner:
        await owner.execute(f"CREATE ROLE {name} LOGIN")
        await owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await owner.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}"
        )
    dml_url = owner_url.replace("//onward@", f"//{name}@")
    store = await open_store(dml_url)
    try:
        tid = transcript()
        await store.write_messages(tid, 0, [user("hello"), user("again")])
        assert [m.content for m in await store.messages(tid)] == ["hello", "again"]
        await store.remember("acme", "shared", MemoryEntry(key="k", text="fact"))
        assert [m.text for m in await store.memories("acme", "shared")] == ["fact"]
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(dml_url) as dml:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await dml.execute("CREATE TABLE onward_probe (id int)")  # the role really cannot


NUL = "before\x00after"
"""A NUL, as a binary file read or a model's text may hold: JSON writes it \\u0000."""


async def nul_round_trip(store: TranscriptStore) -> None:
    tid = transcript()
    await store.write_messages(tid, 0, [user(NUL), Message(role="tool", content=NUL)])
    assert [m.content for m in await store.messages(tid)] == [NUL, NUL]
    await store.write_steps(tid, [step(1, NUL)])
    assert [s.text for s in await store.steps(tid)] == [NUL]
    cached, key = json.dumps({"result": NUL}).encode(), f"cache-{uuid.uuid4().hex}"
    await store.put_cached(key, cached)
    assert await store.get_cached(key) == cached
    scope = uuid.uuid4().hex
    await store.remember("acme", scope, MemoryEntry(key="k\x00", text=NUL))
    assert [(m.key, m.text) for m in await store.memories("acme", scope)] == [("k\x00", NUL)]


async def test_a_nul_in_a_document_is_kept(store: TranscriptStore) -> None:
    await nul_round_trip(store)


async def test_a_nul_in_a_sealed_document_is_kept(postgres_url: str) -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{base64.b64encode(os.urandom(32)).decode()}"))
    store = await open_store(postgres_url, codec)
    try:
        await nul_round_trip(store)
    finally:
        await store.close()


OLD_SCHEMA = """
CREATE TABLE onward_transcript (
    transcript text NOT NULL, kind text NOT NULL, position integer NOT NULL,
    document jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transcript, kind, position)
);
CREATE TABLE onward_memory (
    tenant text NOT NULL, scope text NOT NULL, key_id text NOT NULL,
    document jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, scope, key_id)
);
CREATE TABLE onward_file (
    workspace text NOT NULL, path text NOT NULL, content bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workspace, path)
);
CREATE TABLE onward_file_call (
    workspace text NOT NULL, call text NOT NULL, result text NOT NULL,
    PRIMARY KEY (workspace, call)
)
"""
"""The tables as stores made them before documents were json."""


async def database(postgres_url: str) -> str:
    """The URL of a new, empty database on the test server."""
    name = f"db_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


async def document_types(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = "
            "'document' AND attrelid IN ('onward_transcript'::regclass, 'onward_memory'::regclass)"
        )
        return [str(kind) for (kind,) in await cursor.fetchall()]


async def test_a_jsonb_table_of_an_older_store_is_migrated_once_and_takes_a_nul(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = await database(postgres_url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(OLD_SCHEMA)
        await conn.execute(
            "INSERT INTO onward_transcript (transcript, kind, position, document) "
            "VALUES ('run-old', 'messages', 0, %s::jsonb)",
            (user("kept").model_dump_json(),),
        )
    caplog.set_level(logging.INFO, "onward.store")
    store = await open_store(url)
    try:
        assert await document_types(url) == ["json", "json"]
        migrated = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
        assert migrated == [
            "migrated onward_transcript.document from jsonb to json (it takes a NUL, \\u0000)",
            "migrated onward_memory.document from jsonb to json (it takes a NUL, \\u0000)",
        ]
        assert [m.content for m in await store.messages("run-old")] == ["kept"]
        await nul_round_trip(store)
    finally:
        await store.close()
    caplog.clear()
    await (await open_store(url)).close()
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]  # once


async def test_a_role_that_may_not_migrate_a_jsonb_table_still_uses_it(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = await database(postgres_url)
    role = f"dml_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as owner:
        await owner.execute(OLD_SCHEMA)
        await owner.execute(f"CREATE ROLE {role} LOGIN")
        await owner.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
    caplog.set_level(logging.INFO, "onward.store")
    store = await open_store(url.replace("//onward@", f"//{role}@", 1))
    try:
        tid = transcript()
        await store.write_messages(tid, 0, [user("plain")])
        assert [m.content for m in await store.messages(tid)] == ["plain"]
        # A table added later (the shared rate limits') it may not create either: it
        # starts, and only a worker keeping rate limits is refused (at its start).
        assert isinstance(store.backend, RateBackend)
        limits = RateLimits({"openai": RateLimit(requests_per_minute=5)}, store.backend)
        with pytest.raises(StoreError, match="onward_rate_limit"):
            await limits.check()
    finally:
        await store.close()
    assert await document_types(url) == ["jsonb", "jsonb"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3, warned
    assert "onward_rate_limit is missing and this role may not create it" in warned[0]
    assert "onward_transcript.document is jsonb" in warned[1]


@pytest.mark.parametrize(
    ("cause", "away"),
    [
        (psycopg.OperationalError("connection refused"), True),  # no SQLSTATE: client side
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.TooManyConnections("too many clients"), True),
        (psycopg_pool.PoolTimeout("no connection in 30 s"), True),
        (psycopg.errors.InvalidPassword("password authentication failed"), False),
        (psycopg.errors.DiskFull("no space left"), False),
        (psycopg.errors.ProgramLimitExceeded("row too big"), False),
        (psycopg_pool.PoolClosed("the pool is closed"), False),  # the worker is stopping
        (psycopg.DataError("unsupported Unicode escape sequence"), False),
        (OSError("disk"), False),
    ],
)
def test_only_a_store_gone_away_is_waited_for(cause: Exception, away: bool) -> None:
    # The model activity waits for an unreachable store inside its attempt; a refusal
    # that would repeat (a password, a full disk) fails it at once instead of for 10 min.
    err = StoreError("cannot write to the PostgreSQL store")
    err.__cause__ = cause
    assert unreachable(err) is away
