"""The tasks every system runs: N steps of one tool call each, then an answer.

``record`` (the default kind) is what the time, throughput, history and resume
figures use: each call's arguments carry a ~1 KB note, the result is short.
``read`` is the tool-heavy task the cost figures use: each call asks for a
page (tiny arguments) and the result is a ~4 KB page, the shape of an agent
reading files or search results, where tool results are most of every prompt.

Standard library only: the Onward worker, the bare worker, the peers' workers
(in their own venv) and the fake model server all import it.

The fake model reads the task from the run's prompt, e.g. ``bench run=3f2a
steps=40 delay_at=2 delay_ms=5000`` or ``bench run=3f2a steps=40 kind=read``: a
unique run id (so no two runs share a cached prompt prefix), the number of
tool-calling steps, optionally a model call that answers late (the crash-resume
measurement kills the worker then), and the kind of task.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "NOTE_CHARS",
    "PAGE_CHARS",
    "READ_DESCRIPTION",
    "READ_TOOL",
    "TOOL_DESCRIPTION",
    "TOOL_NAME",
    "Task",
    "model_name",
    "note_for",
    "page_for",
    "read_answer",
    "record_result",
]

TOOL_NAME = "record"
TOOL_DESCRIPTION = "Record a note about the task."
NOTE_CHARS = 1000
"""Each tool call's arguments carry a note this long: about 1 KB of history a step."""

READ_TOOL = "read"
READ_DESCRIPTION = "Read one page of the report."
PAGE_CHARS = 4000
"""Each ``read`` result is a page this long: about 1,000 tokens."""

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
    kind: str = "record"
    """``record`` or ``read`` (see the module's docstring)."""
    clear: bool = False
    """Onward only: ask for tool-result clearing (not part of the prompt)."""

    @property
    def prompt(self) -> str:
        """The run's prompt, which is all the fake model needs to know."""
        text = f"bench run={self.run} steps={self.steps}"
        if self.delay_at >= 0:
            text += f" delay_at={self.delay_at} delay_ms={self.delay_ms}"
        if self.kind != "record":
            text += f" kind={self.kind}"
        return text

    @property
    def tool(self) -> str:
        """The tool the model calls at every step."""
        return READ_TOOL if self.kind == "read" else TOOL_NAME

    @property
    def answer(self) -> str:
        """The final answer of a run that did the whole task."""
        if self.kind == "read":
            return read_answer([page_for(self.steps)] * self.steps)
        return f"done after {self.steps} steps"

    @classmethod
    def parse(cls, prompt: str) -> Task:
        """The task a prompt written by :attr:`prompt` describes."""
        fields = dict(_FIELD.findall(prompt))
        return cls(
            run=fields.get("run", ""),
            steps=int(fields.get("steps", "0")),
            delay_at=int(fields.get("delay_at", "-1")),
            delay_ms=int(fields.get("delay_ms", "0")),
            kind=fields.get("kind", "record"),
        )


def note_for(step: int) -> str:
    """The note the model writes at ``step``: ``NOTE_CHARS`` of text that does not compress."""
    seed = hashlib.sha256(str(step).encode()).hexdigest()
    words = (seed * (NOTE_CHARS // len(seed) + 1))[: NOTE_CHARS - 12]
    return f"step {step:5d}: {words}"


def record_result(note: str) -> str:
    """What the ``record`` tool answers (the same in every system)."""
    return f"recorded {len(note)} characters"


def page_for(page: int) -> str:
    """Page ``page`` of the report: ``PAGE_CHARS`` of text that does not compress."""
    seed = hashlib.sha256(f"page {page}".encode()).hexdigest()
    words = (seed * (PAGE_CHARS // len(seed) + 1))[: PAGE_CHARS - 12]
    return f"page {page:5d}: {words}"


def read_answer(results: list[str]) -> str:
    """The fake model's answer to the ``read`` task, from the tool results it was sent.

    It names how many results the conversation holds and a digest of the last
    one, so a system that lost a result, or the last page's text, answers
    differently.
    """
    last = hashlib.sha256(results[-1].encode()).hexdigest()[:12] if results else "none"
    return f"read {len(results)} pages, the last {last}"
