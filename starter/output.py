"""Printing for commands: human lines at once, or exactly one JSON document."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["emit_json", "note", "say"]


def say(line: str = "") -> None:
    """Print one line of human output at once (people watch runs live)."""
    print(line, flush=True)


def emit_json(document: Any) -> None:
    """Print the one JSON document of a ``--json`` command."""
    print(json.dumps(document, indent=2), flush=True)


def note(line: str) -> None:
    """A remark for the person at the terminal that is not the command's output (stderr)."""
    print(line, file=sys.stderr, flush=True)
