"""Readable text from HTML, with the standard library's parser.

A model pays per token, so a page is reduced to what a person would read: the
title, and the text with scripts, styles and markup dropped and whitespace
collapsed. Block elements become line breaks so paragraphs, list items and
table rows stay apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["PageText", "html_to_text"]

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg"})
"""Their content is code or markup, not text a reader sees."""

_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl",
        "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "body",
        "option",
    }
)  # fmt: skip

_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PageText:
    """The text of an HTML page."""

    title: str | None
    text: str

    def render(self) -> str:
        """``Title: ...``, a blank line, then the text; without a title just the text."""
        if not self.title:
            return self.text
        return f"Title: {self.title}\n\n{self.text}".rstrip()


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._title_seen = False
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Only the page's first <title>: an <svg> icon has titles of its own.
        if tag == "title" and not self._skip_depth and not self._title_seen:
            self._in_title = True
        elif tag in _SKIPPED:
            self._skip_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title, self._title_seen = False, True
        elif tag in _SKIPPED and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        # The title is reported on its own line, not repeated in the text.
        if self._in_title:
            self.title.append(data)
        elif not self._skip_depth:
            # Line breaks in the source are just spaces, except in <pre>.
            self.parts.append(data if self._pre_depth else _WHITESPACE.sub(" ", data))


def html_to_text(html: str) -> PageText:
    """Title and collapsed text of ``html``; tolerant of broken markup, as browsers are."""
    parser = _Extractor()
    # A '<' with no '>' after it makes CPython's parser rescan the rest of the page
    # on every call, quadratic in its length; past the last '>' no tag can end
    # anyway, so what is there is text.
    cut = html.rfind(">") + 1
    parser.feed(html[:cut] + html[cut:].replace("<", "&lt;"))
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    text = "\n".join(line for line in lines if line)
    title = " ".join("".join(parser.title).split())
    return PageText(title=title or None, text=text)
