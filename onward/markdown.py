"""Plain text made safe to show where the Temporal Web UI renders markdown.

The Web UI renders a run's summary, details and current details as markdown
with maths and typography: ``$5 and $10`` shows as ``\\(5 and \\)10``,
``*word*`` turns italic, ``<b>`` is HTML, ``--`` becomes a dash and ``1/2`` a
fraction. Text from users (prompts, tool names, reasons) and our own figures
(costs in dollars) go through :func:`escape_markdown` first, so the page shows
them as they were written. (Straight quotes still show as typographic ones:
the UI curls them whatever the escape.)
"""

from __future__ import annotations

import re

__all__ = ["code_span", "escape_markdown", "unescape_markdown"]

# Characters that open or close a markdown, HTML, maths or typography construct
# inline; the UI's renderer honours a backslash before each (checked in
# headless Chromium against UI 2.54, tests/test_web_ui.py).
_BACKSLASHED = re.compile(r"([\\`*_{}\[\]()<>#+\-!|~$&^])")
# These two show the backslash instead, so they become numeric entities.
_ENTITIES = (
    (re.compile(r"="), "&#61;"),  # a line of "=" underlines a heading
    (re.compile(r"(?<=\d)/(?=\d)"), "&#47;"),  # 1/2 turns into a fraction
)
_DOT_RUN = re.compile(r"\.(?=\.)|(?<=\.)\.")  # "..." turns into an ellipsis
_ORDERED_LIST = re.compile(r"^(\d+)\.(?=\s|$)", re.MULTILINE)
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)  # four spaces start a code block


def escape_markdown(text: str) -> str:
    """``text`` as markdown that the Web UI renders as ``text``.

    ``$0.01 / $1`` stays ``$0.01 / $1`` instead of becoming maths, ``*x*``
    stays ``*x*``. Leading indentation is dropped (it would start a code block)
    and straight quotes may show curled.

    Args:
        text: Plain text, possibly from a user.

    Returns:
        Markdown source that renders as ``text``.
    """
    escaped = _BACKSLASHED.sub(r"\\\1", _INDENT.sub("", text))
    for pattern, entity in _ENTITIES:
        escaped = pattern.sub(entity, escaped)
    escaped = _DOT_RUN.sub(r"\\.", escaped)
    return _ORDERED_LIST.sub(r"\1\\.", escaped)


_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()<>#+\-!|~$&^.])|&#61;|&#47;")
"""What :func:`escape_markdown` writes: a backslashed character, or an entity."""


def unescape_markdown(text: str) -> str:
    """The text :func:`escape_markdown` made ``text`` of (its indentation aside)."""

    def plain(found: re.Match[str]) -> str:
        return found.group(1) or ("=" if found.group(0) == "&#61;" else "/")

    return _ESCAPED.sub(plain, text)


def code_span(text: str) -> str:
    """``text`` as an inline code span, which markdown shows verbatim.

    Backslashes do not escape inside a code span, so a backtick in ``text``
    is replaced by a look-alike instead of ending the span early.
    """
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"
