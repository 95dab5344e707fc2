"""The Temporal Web UI, read in headless Chromium the way a user reads it.

One dev server with its UI for the module, a worker, and four runs (completed,
budget exceeded, cancelled, failed); each test opens a page and asserts on the
text the browser rendered. Summaries and details are rendered in iframes, so
their text is read from every frame of the page. A second worker, whose model
endpoint cannot be reached, serves the run whose retries are read while it runs.
"""

from __future__ import annotations

import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, async_playwright
from playwright.async_api import Error as PlaywrightError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from conftest import UNREACHABLE, UnreachableModel, eventually, running_worker, temporal_cli
from onward.activities.providers.scripted import ScriptedModel
from onward.connection import DATA_CONVERTER
from onward.contracts import AgentInput, AgentResult, CancelRequest, ModelRequest, ModelResponse
from onward.starter.render import static_details, static_summary
from onward.worker import ensure_search_attributes
from onward.workflows import AgentWorkflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)"
)

# Everything the UI's markdown could take for maths, emphasis, HTML, a link or typography.
PROMPT = "Costs $5 and $10, *not italic* _nor_ `code` <b>x</b> [l](u) 1/2 -- ... a=b"
USAGE = {"input_tokens": 10, "output_tokens": 5}
SCRIPT = [
    {
        "text": "adding",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}],
        "usage": USAGE,
    },
    {
        "text": "saving",
        "tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "4"}}],
        "usage": USAGE,
    },
    {"text": "4", "usage": USAGE},
]
PAGE_WAIT_S = 20.0
REFUSED = "the model refused the request"
RETRY = r"(?P<attempt>\d+) / \d+"
"""How the UI writes an activity's attempt: ``3 / 8`` (of at most 8)."""


class RefusingModel:
    """A model that rejects every request for good: the run fails at its first call."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ApplicationError(REFUSED, type="InvalidRequest", non_retryable=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _plain(text: str) -> str:
    """Rendered text with whitespace collapsed."""
    return " ".join(text.split())


@dataclass
class UiRuns:
    """The module's runs, on a dev server whose Web UI listens on ``base``."""

    base: str
    client: Client
    task_queue: str
    unreachable_queue: str
    """The task queue of the worker whose model endpoint cannot be reached."""
    completed: WorkflowHandle[AgentWorkflow, AgentResult]
    exceeded: WorkflowHandle[AgentWorkflow, AgentResult]
    cancelled: WorkflowHandle[AgentWorkflow, AgentResult]
    failed: WorkflowHandle[AgentWorkflow, AgentResult]

    def url(self, handle: WorkflowHandle[Any, Any], tab: str = "") -> str:
        return f"{self.base}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}{tab}"

    def list_url(self, query: str) -> str:
        return f"{self.base}/namespaces/default/workflows?query={quote(query)}"


@pytest_asyncio.fixture(scope="module")
async def ui_runs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiRuns]:
    ui_port = _free_port()
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
    ) as env:
        client = env.client
        names = await ensure_search_attributes(client, "default")
        workspace = tmp_path_factory.mktemp("web-ui")
        providers = {"scripted": ScriptedModel(), "refusing": RefusingModel()}
        # The workers stay up while the pages are read: the UI asks them for the card.
        async with (
            running_worker(client, workspace / "main", names, providers=providers) as worker,
            running_worker(
                client, workspace / "unreachable", names, providers={"scripted": UnreachableModel()}
            ) as unreachable,
        ):

            async def start(agent: dict[str, Any]) -> WorkflowHandle[AgentWorkflow, AgentResult]:
                agent_input = AgentInput.model_validate(agent)
                return await client.start_workflow(
                    AgentWorkflow.run,
                    agent_input,
                    id=f"ui-{uuid.uuid4().hex[:12]}",
                    task_queue=worker.task_queue,
                    # What `onward run` sets: the prompt and the setup.
                    static_summary=static_summary(agent_input),
                    static_details=static_details(agent_input),
                )

            completed = await start(
                {"prompt": PROMPT, "script": SCRIPT, "budget": {"max_cost_usd": 0.01}}
            )
            exceeded = await start({"prompt": "p", "script": SCRIPT, "budget": {"max_steps": 1}})
            cancelled = await start(
                {
                    "prompt": "p",
                    "script": [{"tool_calls": [{"name": "wait", "arguments": {"seconds": 300}}]}],
                }
            )
            failed = await start({"prompt": "p", "model": "refusing:any"})
            await completed.result()
            await exceeded.result()
            await cancelled.signal(AgentWorkflow.cancel, CancelRequest(reason="not needed"))
            await cancelled.result()
            assert (await failed.result()).status == "failed"
            await _indexed(client, worker.task_queue, 4)
            yield UiRuns(
                base=f"http://127.0.0.1:{ui_port}",
                client=client,
                task_queue=worker.task_queue,
                unreachable_queue=unreachable.task_queue,
                completed=completed,
                exceeded=exceeded,
                cancelled=cancelled,
                failed=failed,
            )


async def _indexed(client: Client, task_queue: str, count: int) -> None:
    """Wait until visibility lists ``count`` closed runs with their final OnwardStatus."""

    async def listed() -> bool:
        query = f'TaskQueue = "{task_queue}" AND ExecutionStatus != "Running"'
        runs = [run async for run in client.list_workflows(query)]
        return len(runs) == count and all(
            run.search_attributes.get("OnwardStatus") != ["running"] for run in runs
        )

    await eventually(listed)


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1200})
    opened = await context.new_page()
    opened.set_default_timeout(PAGE_WAIT_S * 1000)
    yield opened
    await context.close()


async def _rendered_markdown(page: Page) -> list[str]:
    """The text of every markdown block on the page (each is its own iframe).

    Empty while the UI is still re-rendering them (a frame detached mid-read).
    """
    texts = []
    for frame in page.frames:
        if "/render" in frame.url:
            try:
                texts.append(_plain(await frame.inner_text("body", timeout=1000)))
            except PlaywrightError:
                return []
    return texts


async def test_summary_details_and_card_read_as_written(ui_runs: UiRuns, page: Page) -> None:
    await page.goto(ui_runs.url(ui_runs.completed, "/user-metadata"))
    texts: list[str] = []

    async def card_shown() -> bool:
        texts[:] = await _rendered_markdown(page)
        return any(text.startswith("completed · step 3") for text in texts)

    await eventually(card_shown, timeout_s=PAGE_WAIT_S)
    assert PROMPT in texts  # the summary, exactly as typed
    assert any(text.endswith(f"prompt {PROMPT}") for text in texts)  # the details' quote
    (card,) = [text for text in texts if text.startswith("completed · step 3")]
    assert "cost $0.0000600 / $0.0100" in card
    for text in texts:
        assert "\\" not in text  # no escape shows, and no "\\(" from dollars read as maths


async def test_every_tool_call_is_labelled_in_the_timeline(ui_runs: UiRuns, page: Page) -> None:
    await page.goto(ui_runs.url(ui_runs.completed))
    # A local activity (calculator) is labelled by its type alone; a regular one
    # (write_file) by its type and summary.
    await page.get_by_text("calculator(2+2)", exact=True).wait_for()
    await page.get_by_text("execute_tool • write_file(path=a.txt, content=4)").wait_for()
    labels = _plain(await page.inner_text("body"))
    assert "scripted · step 3" in labels
    lines = [line.strip() for line in (await page.inner_text("body")).splitlines()]
    assert "execute_tool" not in lines  # no tool call shows as a bare activity type


async def test_the_outcome_shows_in_the_workflow_list(ui_runs: UiRuns, page: Page) -> None:
    await page.goto(ui_runs.list_url(f'TaskQueue = "{ui_runs.task_queue}"'))
    rows = page.locator("tbody tr")

    async def row_text(handle: WorkflowHandle[Any, Any]) -> str:
        return _plain(await rows.filter(has_text=handle.id).inner_text())

    await eventually(lambda: _count_is(rows, 4), timeout_s=PAGE_WAIT_S)
    # Temporal's own badge says COMPLETED for each: every run returned its result.
    assert "COMPLETED" in await row_text(ui_runs.exceeded)
    # The README's recipe: add the OnwardStatus column (Configure Columns).
    await page.get_by_test_id("workflows-summary-table-configuration-button").click()
    await page.get_by_test_id("orderable-list-item-OnwardStatus-add-button").click()
    await page.keyboard.press("Escape")

    async def statuses_shown() -> bool:
        return "budget_exceeded" in await row_text(ui_runs.exceeded)

    await eventually(statuses_shown, timeout_s=PAGE_WAIT_S)
    assert "cancelled" in await row_text(ui_runs.cancelled)
    assert "failed" in await row_text(ui_runs.failed)
    assert "completed" in await row_text(ui_runs.completed)

    # The README's saved view: runs that did not complete, whatever Temporal's badge says.
    await page.goto(
        ui_runs.list_url(f'OnwardStatus != "completed" AND TaskQueue = "{ui_runs.task_queue}"')
    )
    await eventually(lambda: _count_is(rows, 3), timeout_s=PAGE_WAIT_S)
    ids = " ".join(await rows.all_inner_texts())
    for shown in (ui_runs.exceeded, ui_runs.cancelled, ui_runs.failed):
        assert shown.id in ids
    assert ui_runs.completed.id not in ids


async def _count_is(rows: Locator, count: int) -> bool:
    return await rows.count() == count


async def test_a_model_call_that_keeps_failing_shows_its_retries_while_the_run_runs(
    ui_runs: UiRuns, page: Page
) -> None:
    # The workflow cannot see the attempts of an activity in flight; the UI shows
    # them from the server's record of the pending activity.
    handle = await ui_runs.client.start_workflow(
        AgentWorkflow.run,
        AgentInput(prompt="hello"),
        id=f"ui-retry-{uuid.uuid4().hex[:12]}",
        task_queue=ui_runs.unreachable_queue,
    )
    try:
        # The timeline labels the call with its attempt, refreshing itself as it runs.
        await page.goto(ui_runs.url(handle))
        await eventually(lambda: _retry_shown(page, rf"Attempt {RETRY} • call_model"), PAGE_WAIT_S)
        # The Pending Activities tab adds why the last attempt failed (as of its loading).
        await page.goto(ui_runs.url(handle, "/pending-activities"))
        await eventually(lambda: _retry_shown(page, rf"Attempt {RETRY} "), PAGE_WAIT_S)
        text = _plain(await page.inner_text("body"))
        assert "Last Failure" in text and f'"message": "{UNREACHABLE}"' in text
        assert "RUNNING" in text and "call_model" in text
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        await handle.terminate("test over")


async def _retry_shown(page: Page, pattern: str) -> bool:
    """Whether the page's text shows ``pattern`` with an attempt after the first."""
    attempt = re.search(pattern, _plain(await page.inner_text("body")))
    return attempt is not None and int(attempt["attempt"]) > 1
