"""Run a script's ``main()`` and end its process cleanly, past the Temporal SDK's teardown.

A short script that used a Temporal client can abort at the very end, after all
its output: the client's native (Rust) threads are still around while the
interpreter finalizes, and one may take the GIL too late ("Fatal Python error:
PyGILState_Release", exit 134; temporalio/sdk-python#300). The ``onward`` CLI
ends with :func:`os._exit` for that reason, and :func:`run_main` does the same
for scripts::

    import onward

    async def main() -> None:
        client = await onward.OnwardClient.connect()
        ...

    onward.run_main(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Coroutine
from typing import Any, NoReturn

__all__ = ["run_main"]


def run_main(main: Coroutine[Any, Any, object]) -> NoReturn:
    """``asyncio.run(main)``, then exit the process at once with its status.

    The status is 0, or ``sys.exit``'s code, or 1 after printing the traceback
    of an exception, or 130 on Ctrl-C. Output and logs are flushed first; the
    interpreter's teardown (``atexit`` handlers, garbage collection) is skipped,
    which is where the SDK's threads can crash it.
    """
    code = 0
    try:
        asyncio.run(main)
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then exit 1
        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
            stream.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` gives: 0 for None, the int, else 1 (after printing it)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
