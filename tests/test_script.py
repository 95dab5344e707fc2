"""``onward.run_main``: a script's main() run, and its process ended with its status."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, sys
import onward

async def main() -> None:
    print("working")
    {body}

onward.run_main(main())
print("never printed: the process has ended")
"""


@pytest.mark.parametrize(
    ("body", "code", "err"),
    [
        ("pass", 0, ""),
        ("sys.exit(3)", 3, ""),
        ("sys.exit('bad input')", 1, "bad input"),
        ("raise ValueError('boom')", 1, "ValueError: boom"),
        ("raise KeyboardInterrupt", 130, ""),
    ],
)
def test_run_main_ends_the_process_with_mains_status(body: str, code: int, err: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(body=body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == "working\n"  # flushed before the exit; nothing after it
    assert err in done.stderr
