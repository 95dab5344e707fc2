"""Running a command's coroutine so that Ctrl-C always ends it at once (exit 130, no traceback)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

__all__ = ["run_interruptibly"]

T = TypeVar("T")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_interruptibly(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end like ``asyncio.run``; Ctrl-C raises ``KeyboardInterrupt`` at once.

    Two things of ``asyncio.run`` made Ctrl-C hang under load: its SIGINT
    handling only cancels the main task, which code waiting on Temporal may
    not see promptly; and after an interrupt it waits for every cancelled task,
    including a history long-poll RPC that can take many seconds to give up.
    Here the signal handler raises wherever the loop is, and an interrupted
    loop is left as it is: the command reports the interrupt and the process
    exits right after (``onward`` ends with ``os._exit``).
    """
    loop = asyncio.new_event_loop()
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # started with Ctrl-C ignored (nohup, `&`): keep it so
        signal.signal(signal.SIGINT, _interrupt)
    try:
        result = loop.run_until_complete(main)
    except KeyboardInterrupt:
        raise
    except BaseException:
        _close(loop)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    _close(loop)
    return result


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does after its coroutine: cancel what is left, then close."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
