"""The bench's ``record`` tool for the Onward worker (``worker.py --tools bench.onward_tools``)."""

from __future__ import annotations

from bench.workload import record_result
from onward.activities.tools import tool

__all__ = ["record"]


@tool(local=True, timeout_s=5)
def record(note: str) -> str:
    """Record a note about the task.

    Args:
        note: The note.
    """
    return record_result(note)
