"""The Temporal Web UI reads an encrypted run through ``onward codec-server``, in headless Chromium.

A dev server whose UI is told the codec endpoint (``--ui-codec-endpoint``),
an encrypted run, and the page of that run: with the codec server up the
browser shows the prompt; with it down the UI has only ciphertext to show.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from conftest import eventually, running_worker, spawn_onward, temporal_cli
from onward.connection import DATA_CONVERTER, data_converter
from onward.contracts import AgentInput, ModelRequest, ModelResponse
from onward.encryption import EncryptionCodec, parse_keys
from onward.worker import ensure_search_attributes
from onward.workflows import AgentWorkflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)"
)

PAGE_WAIT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _codec_server(keys: str, port: int, ui: str) -> asyncio.subprocess.Process:
    """``onward codec-server`` on ``port`` for the UI at ``ui``, once it answers."""
    process = await spawn_onward(
        "codec-server",
        "--port",
        str(port),
        "--ui-origin",
        ui,
        env={"ONWARD_ENCRYPTION_KEYS": keys},
    )
    async with httpx.AsyncClient() as http:

        async def answers() -> bool:
            try:
                await http.options(f"http://127.0.0.1:{port}/decode")
            except httpx.TransportError:
                return False
            return True

        await eventually(answers)
    return process


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _page_text(page: Page) -> str:
    return " ".join((await page.inner_text("body")).split())


@pytest.fixture
async def ui_page() -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        context = await browser.new_context(viewport={"width": 1600, "height": 1200})
        page = await context.new_page()
        page.set_default_timeout(PAGE_WAIT_S * 1000)
        yield page
        await browser.close()


async def test_the_web_ui_shows_an_encrypted_prompt_only_through_the_codec_server(
    ui_page: Page, tmp_path: Path
) -> None:
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    codec = EncryptionCodec(parse_keys(keys))
    ui_port, codec_port = _free_port(), _free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    secret = f"pangolin-{uuid.uuid4().hex[:8]}"
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=dataclasses.replace(DATA_CONVERTER, payload_codec=codec),
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{codec_port}"],
    ) as env:
        names = await ensure_search_attributes(env.client, "default")
        async with running_worker(env.client, tmp_path / "ws", names) as worker:
            handle = await env.client.start_workflow(
                AgentWorkflow.run,
                AgentInput(prompt=f"remember {secret}", script=[{"text": "noted"}]),
                id=f"ui-enc-{uuid.uuid4().hex[:8]}",
                task_queue=worker.task_queue,
            )
            await handle.result()
        url = f"{ui}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}"

        codec_server = await _codec_server(keys, codec_port, ui)
        try:
            await ui_page.goto(url)

            async def decrypted() -> bool:
                return secret in await _page_text(ui_page)

            await eventually(decrypted, timeout_s=PAGE_WAIT_S)
        finally:
            await _stop(codec_server)

        # The same page with the codec server gone: the UI has only ciphertext.
        await ui_page.goto(url)

        async def sealed_shown() -> bool:
            # The raw payload, its metadata in base64: "binary/encrypted" and the key id.
            text = await _page_text(ui_page)
            return '"encryption-key-id"' in text and _b64(b"binary/encrypted") in text

        await eventually(sealed_shown, timeout_s=PAGE_WAIT_S)
        assert secret not in await _page_text(ui_page)


class _Refusing:
    """A provider refusing the prompt with a message that quotes it."""

    def __init__(self, quote: str) -> None:
        self.quote = quote

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ApplicationError(
            f"openai: 400 Bad Request: flagged '{self.quote}'",
            type="InvalidRequest",
            non_retryable=True,
        )


async def test_the_web_ui_reads_an_encrypted_failure_through_the_codec_server(
    ui_page: Page, tmp_path: Path
) -> None:
    """A failure's message is sealed in the history (in its encoded attributes):
    the UI's event shows it decrypted through the codec server."""
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    environ = {"ONWARD_ENCRYPTION_KEYS": keys, "ONWARD_PAYLOADS": str(tmp_path / "payloads")}
    ui_port, codec_port = _free_port(), _free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    secret = f"pangolin-{uuid.uuid4().hex[:8]}"
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(environ),
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{codec_port}"],
    ) as env:
        names = await ensure_search_attributes(env.client, "default")
        refusing = {"openai": _Refusing(secret)}
        async with running_worker(env.client, tmp_path / "ws", names, providers=refusing) as worker:
            handle = await env.client.start_workflow(
                AgentWorkflow.run,
                AgentInput(prompt="hi", model="openai:gpt-4o-mini"),
                id=f"ui-fail-{uuid.uuid4().hex[:8]}",
                task_queue=worker.task_queue,
            )
            assert (await handle.result()).status == "failed"
        history = f"{ui}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}/history"

        codec_server = await _codec_server(keys, codec_port, ui)
        try:
            await ui_page.goto(history)
            await ui_page.click("text=Activity Task Failed")  # its details, failure included

            opened = '"encodedAttributes": { "message": "openai: 400 Bad Request: flagged'

            async def decrypted() -> bool:
                text = await _page_text(ui_page)
                return f"{opened} '{secret}'" in text

            await eventually(decrypted, timeout_s=PAGE_WAIT_S)
        finally:
            await _stop(codec_server)
