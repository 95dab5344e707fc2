"""Cutting text for people: one line, at a word boundary, saying what was left out.

Pure functions shared by the workflow (step log, Web UI card) and every client.
"""

from __future__ import annotations

__all__ = ["clip", "counted", "shorten"]

_ELLIPSIS = "…"
_WORD_SLACK = 0.6
"""A cut goes back to the last space only if that keeps at least this share of the
limit: one very long word (a URL, a path) is cut mid-word rather than dropped."""


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, cut after a whole word with ``…``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space >= limit * _WORD_SLACK:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + _ELLIPSIS


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"{_ELLIPSIS} [{len(text) - limit} more characters]"


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless it is one: ``1 character``, ``2 characters``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
