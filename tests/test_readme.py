"""The README's `temporal workflow` blocks, run verbatim against a real server and worker.

They use the default task queue (``onward``) and no ``--address``; the
``temporal`` CLI takes the test server from ``TEMPORAL_ADDRESS``, as a user's
shell would give it.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from temporalio.client import Client

from conftest import REPO, temporal_cli
from onward.worker import WorkerSettings, build_worker

README = (REPO / "README.md").read_text(encoding="utf-8")


def block_with(marker: str) -> str:
    """The ```bash block of the README that contains ``marker``."""
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        if marker in block:
            return str(block)
    raise AssertionError(f"no bash block in the README mentions {marker}")


async def run_block(block: str, address: str) -> tuple[int, str]:
    script = "set -euo pipefail\n" + block.replace(".venv/bin/temporal", temporal_cli())
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env={**os.environ, "TEMPORAL_ADDRESS": address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_readme_temporal_cli_blocks_run_verbatim(
    client: Client, address: str, tmp_path: Path, search_attribute_names: list[str]
) -> None:
    settings = WorkerSettings(task_queue="onward", workspace=tmp_path / "workspace")
    async with build_worker(client, settings, search_attribute_names=search_attribute_names):
        code, out = await run_block(block_with("--workflow-id demo-1"), address)
        assert code == 0, out
        assert "They come to 19.75." in out

        code, out = await run_block(block_with("--workflow-id demo-2"), address)
        assert code == 0, out
        assert "COMPLETED" in out and "cancelled" in out and "enough" in out
        status = await client.get_workflow_handle("demo-2").query("status")
    assert status["state"] == "cancelled"
    assert status["budget"]["max_tool_calls"] == 20  # the update took effect
