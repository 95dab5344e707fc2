"""The bench's tools for the Onward worker (``worker.py --tools bench.onward_tools``).

``async def``, like the floor's and the peers' tools: Onward runs a plain ``def``
tool in a thread (it may block), a hop the other systems would not pay.
"""

from __future__ import annotations

from bench.workload import page_for, record_result
from onward.activities.tools import tool

__all__ = ["read", "record"]


@tool(local=True, timeout_s=5)
async def record(note: str) -> str:
    """Record a note about the task.

    Args:
        note: The note.
    """
    return record_result(note)


@tool(local=True, timeout_s=5)
async def read(page: int) -> str:
    """Read one page of the report.

    Args:
        page: The page number.
    """
    return page_for(page)
