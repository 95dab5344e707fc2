"""Memory across runs: remember/recall per tenant and scope, on a local store and PostgreSQL."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from postgres_server import postgres_url
from temporalio.client import Client

from conftest import running_worker
from onward.client import OnwardClient
from onward.contracts import AgentInput, AgentResult, Budget, SessionReply
from onward.delegation import DelegateArgs, child_input
from onward.encryption import EncryptionCodec, EncryptionError, parse_keys
from onward.errors import InvalidInput
from onward.memory import DEFAULT_MEMORY_SCOPE, MemoryEntry, rank, tokens
from onward.starter.cli import build_parser
from onward.starter.inputs import agent_input
from onward.starter.session_commands import session_input
from onward.store import TranscriptStore, open_store

__all__ = ["postgres_url"]  # the fixture, imported for the tests below


# ---------------------------------------------------------------------------
# Ranking (pure)
# ---------------------------------------------------------------------------


def entry(key: str, text: str) -> MemoryEntry:
    return MemoryEntry(key=key, text=text)


def test_tokens_are_lower_case_words() -> None:
    assert tokens("User's TZ: UTC+1, café_2") == ["user", "s", "tz", "utc", "1", "café_2"]


def test_rank_puts_the_most_relevant_first_and_leaves_out_non_matches() -> None:
    entries = [
        entry("user.timezone", "The user lives in Lisbon, timezone UTC+0."),
        entry("project.deadline", "The report is due on Friday."),
        entry("user.language", "The user prefers Portuguese; answer in English anyway."),
    ]
    # "the" is in every entry, so it ranks the deadline last but still matches.
    assert [e.key for e in rank(entries, "what timezone is the user in")] == [
        "user.timezone",
        "user.language",
        "project.deadline",
    ]
    assert [e.key for e in rank(entries, "user timezone")] == ["user.timezone", "user.language"]
    assert [e.key for e in rank(entries, "deadline")] == ["project.deadline"]
    assert rank(entries, "kangaroo") == []
    assert rank(entries, "   ") == []
    assert rank([], "timezone") == []


def test_rank_weighs_keys_limits_and_breaks_ties_by_key() -> None:
    entries = [
        entry("colour", "blue is mentioned here once"),
        entry("blue", "the favourite colour"),
    ]
    assert [e.key for e in rank(entries, "blue")] == ["blue", "colour"]
    same = [entry(f"k{n}", "same words") for n in (3, 1, 2)]
    assert [e.key for e in rank(same, "words", limit=2)] == ["k1", "k2"]


# ---------------------------------------------------------------------------
# The store: one space per tenant and scope, replace by key
# ---------------------------------------------------------------------------


@pytest_asyncio.fixture(params=["local", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[TranscriptStore]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_remember_replaces_by_key_within_one_space_only(store: TranscriptStore) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    await store.remember(tenant, "shared", entry("city", "Lisbon"))
    await store.remember(tenant, "shared", entry("city", "Porto"))  # replaces
    await store.remember(tenant, "shared", entry("city", "Porto"))  # a retry: no change
    await store.remember(tenant, "other", entry("city", "Faro"))
    await store.remember(f"{tenant}-2", "shared", entry("city", "Braga"))
    assert await store.memories(tenant, "shared") == [entry("city", "Porto")]
    assert await store.memories(tenant, "other") == [entry("city", "Faro")]
    assert await store.memories(f"{tenant}-2", "shared") == [entry("city", "Braga")]
    assert await store.memories(f"{tenant}-3", "shared") == []


# ---------------------------------------------------------------------------
# Runs: remembered in one, recalled in a new one, never across tenants or scopes
# ---------------------------------------------------------------------------


def remembering(key: str, text: str) -> list[dict[str, Any]]:
    call = {"name": "remember", "arguments": {"key": key, "text": text}}
    return [{"text": "saving", "tool_calls": [call]}, {"text": "saved"}]


def recalling(query: str) -> list[dict[str, Any]]:
    call = {"name": "recall", "arguments": {"query": query}}
    return [{"text": "looking", "tool_calls": [call]}, {"text": "found"}]


def recalled(result: AgentResult) -> str:
    (call,) = result.steps[0].tool_calls
    assert call.error is None, call.error
    assert call.result is not None
    return call.result


async def test_a_fact_remembered_in_one_run_is_recalled_in_the_next_of_its_tenant_only(
    client: Client, tmp_path: Path, search_attribute_names: list[str], store_url: str
) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    fact = "The user lives in Lisbon; timezone UTC+0."

    async def run_on_a_fresh_worker(machine: str, **agent: Any) -> AgentResult:
        # Each run on its own worker, workspace and store connection: another machine.
        store = await open_store(store_url)
        try:
            async with running_worker(
                client, tmp_path / machine, search_attribute_names, store=store
            ) as worker:
                return await worker.run(AgentInput.model_validate(agent))
        finally:
            await store.close()

    saved = await run_on_a_fresh_worker(
        "a", prompt="remember", tenant=tenant, script=remembering("user.timezone", fact)
    )
    assert saved.status == "completed"
    assert saved.steps[0].tool_calls[0].result == "remembered 'user.timezone'"

    same = await run_on_a_fresh_worker(
        "b", prompt="recall", tenant=tenant, script=recalling("which timezone?")
    )
    assert recalled(same) == f"user.timezone: {fact}"
    explicit = await run_on_a_fresh_worker(
        "c",
        prompt="recall",
        tenant=tenant,
        memory_scope=DEFAULT_MEMORY_SCOPE,
        script=recalling("timezone"),
    )
    assert recalled(explicit) == f"user.timezone: {fact}"

    for other in (
        {"tenant": f"{tenant}-other"},
        {"tenant": tenant, "memory_scope": "project-x"},
        {},  # no tenant: a space of its own
    ):
        answer = await run_on_a_fresh_worker(
            "d", prompt="recall", script=recalling("timezone"), **other
        )
        assert recalled(answer) == "nothing remembered matches 'timezone'", other


async def test_memory_scope_is_checked_and_set_by_the_cli() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "hi", "--tenant", "acme", "--memory-scope", "alice"])
    assert agent_input(args).memory_scope == "alice"
    assert agent_input(parser.parse_args(["run", "hi"])).memory_scope is None
    scheduled = parser.parse_args(
        ["schedule", "create", "--cron", "0 8 * * *", "--prompt", "p", "--memory-scope", "daily"]
    )
    assert agent_input(scheduled).memory_scope == "daily"
    chat = parser.parse_args(["chat", "--tenant", "acme", "--memory-scope", "alice"])
    assert session_input(chat).memory_scope == "alice"
    with pytest.raises(InvalidInput, match=r"memory_scope \(--memory-scope\)"):
        session_input(parser.parse_args(["chat", "--memory-scope", ""]))
    with pytest.raises(InvalidInput, match=r"memory_scope \(--memory-scope\)"):
        agent_input(parser.parse_args(["run", "hi", "--memory-scope", ""]))


async def test_memories_are_sealed_with_encryption_keys(store_url: str) -> None:
    codec = EncryptionCodec(parse_keys(f"k1:{base64.b64encode(os.urandom(32)).decode()}"))
    sealed = await open_store(store_url, codec)
    plain = await open_store(store_url)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    try:
        await sealed.remember(tenant, "shared", entry("launch.code", "swordfish-42"))
        assert await sealed.memories(tenant, "shared") == [entry("launch.code", "swordfish-42")]
        raw = await plain.backend.memory_documents(tenant, "shared")  # type: ignore[attr-defined]
        assert len(raw) == 1
        assert b"swordfish" not in raw[0] and b"launch.code" not in raw[0]
        with pytest.raises(EncryptionError):
            await plain.memories(tenant, "shared")
    finally:
        await sealed.close()
        await plain.close()


def test_a_sub_agent_shares_its_parents_tenant_and_memory_scope() -> None:
    parent = AgentInput(prompt="p", tenant="acme", memory_scope="alice")
    child = child_input(parent, DelegateArgs(prompt="sub"), Budget(), ["recall"], "ws")
    assert (child.tenant, child.memory_scope) == ("acme", "alice")


async def test_a_fact_remembered_in_one_session_is_recalled_in_a_new_one_of_its_tenant_only(
    client: Client, tmp_path: Path, search_attribute_names: list[str], postgres_url: str
) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    fact = "The weekly report goes to Dana on Fridays."
    store = await open_store(postgres_url)
    try:
        async with running_worker(
            client, tmp_path / "workspace", search_attribute_names, store=store
        ) as worker:
            onward = OnwardClient(client, task_queue=worker.task_queue)

            async def one_message(
                message: str, script: list[dict[str, Any]], **session: Any
            ) -> SessionReply:
                session_id = await onward.open_session({"script": script, **session})
                try:
                    return await onward.send_message(session_id, message)
                finally:
                    await onward.close_session(session_id)

            saved = await one_message(
                "note who gets the report", remembering("report.owner", fact), tenant=tenant
            )
            assert saved.steps[0].tool_calls[0].result == "remembered 'report.owner'"

            later = await one_message("who gets it?", recalling("weekly report"), tenant=tenant)
            assert later.steps[0].tool_calls[0].result == f"report.owner: {fact}"

            for other in ({"tenant": f"{tenant}-other"}, {"tenant": tenant, "memory_scope": "x"}):
                elsewhere = await one_message("who gets it?", recalling("weekly report"), **other)
                (call,) = elsewhere.steps[0].tool_calls
                assert call.result == "nothing remembered matches 'weekly report'", other
    finally:
        await store.close()
