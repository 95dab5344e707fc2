"""The one task every system runs: N steps of one ``record`` tool call each, then an answer.

Standard library only: the Onward worker, the bare worker, the peers' workers
(in their own venv) and the fake model server all import it.

The fake model reads the task from the run's prompt, e.g. ``bench run=3f2a
steps=40 delay_at=2 delay_ms=5000``: a unique run id (so no two runs share a
cached prompt prefix), the number of tool-calling steps, and optionally a model
call that answers late (the crash-resume measurement kills the worker then).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "NOTE_CHARS",
    "TOOL_DESCRIPTION",
    "TOOL_NAME",
    "Task",
    "model_name",
    "note_for",
    "record_result",
]

TOOL_NAME = "record"
TOOL_DESCRIPTION = "Record a note about the task."
NOTE_CHARS = 1000
"""Each tool call's arguments carry a note this long: about 1 KB of history a step."""

_FIELD = re.compile(r"(\w+)=(\S+)")


def model_name(system: str) -> str:
    """The model name a system asks for; the fake server bills each system by it."""
    return f"bench-{system}"


@dataclass(frozen=True)
class Task:
    """What the fake model plays for one run."""

    run: str
    steps: int
    delay_at: int = -1
    """The model call of this step (0-based) answers ``delay_ms`` late, on its first attempt."""
    delay_ms: int = 0

    @property
    def prompt(self) -> str:
        """The run's prompt, which is all the fake model needs to know."""
        text = f"bench run={self.run} steps={self.steps}"
        if self.delay_at >= 0:
            text += f" delay_at={self.delay_at} delay_ms={self.delay_ms}"
        return text

    @classmethod
    def parse(cls, prompt: str) -> Task:
        """The task a prompt written by :attr:`prompt` describes."""
        fields = dict(_FIELD.findall(prompt))
        return cls(
            run=fields.get("run", ""),
            steps=int(fields.get("steps", "0")),
            delay_at=int(fields.get("delay_at", "-1")),
            delay_ms=int(fields.get("delay_ms", "0")),
        )


def note_for(step: int) -> str:
    """The note the model writes at ``step``: ``NOTE_CHARS`` of text that does not compress."""
    seed = hashlib.sha256(str(step).encode()).hexdigest()
    words = (seed * (NOTE_CHARS // len(seed) + 1))[: NOTE_CHARS - 12]
    return f"step {step:5d}: {words}"


def record_result(note: str) -> str:
    """What the ``record`` tool answers (the same in every system)."""
    return f"recorded {len(note)} characters"
