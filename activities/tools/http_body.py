"""An HTTP response body as text: bounded reading, bounded decompression, media types.

``http_fetch`` reads at most a fixed number of bytes from the network and
keeps at most as many after undoing gzip/deflate, so neither a huge page nor a
small compressed bomb can exhaust the worker. What it kept becomes text by its
media type: HTML reduced to readable text, JSON and other text as they are,
anything else summarised in one line.
"""

from __future__ import annotations

import codecs
import zlib

import httpx

from onward.activities.tools.html_text import html_to_text
from onward.errors import ToolError

__all__ = ["body_text", "read_body"]

_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "application/x-yaml",
        "application/x-ndjson",
        "application/graphql",
        "application/sql",
    }
)


async def read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The decoded body, at most ``limit`` bytes; True when there was more."""
    if response.is_stream_consumed:
        # An in-memory response (a MockTransport's) arrives already read and decoded.
        return response.content[:limit], len(response.content) > limit
    raw, truncated = await _read_limited(response, limit)
    content, cut = _decode_content(raw, response.headers.get("content-encoding", ""), limit)
    return content, truncated or cut


async def _read_limited(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the raw body; True when more was on its way."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _decode_content(raw: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """Undo gzip/deflate with a bound on the output, so a small bomb stays small."""
    data, cut = raw, False
    for coding in reversed([item.strip().lower() for item in encoding.split(",") if item.strip()]):
        if coding == "identity":
            continue
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise ToolError(f"http_fetch: unsupported Content-Encoding {coding!r}")
        data, more = _inflate(data, coding, limit)
        cut = cut or more
    return data, cut


def _inflate(data: bytes, coding: str, limit: int) -> tuple[bytes, bool]:
    wbits = zlib.MAX_WBITS | 16 if coding != "deflate" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        return inflater.decompress(data, limit), bool(inflater.unconsumed_tail)
    except zlib.error:
        if coding != "deflate":
            raise ToolError(f"http_fetch: the {coding} body is corrupt") from None
    try:
        # "deflate" should be zlib-wrapped, but some servers send it raw.
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        return inflater.decompress(data, limit), bool(inflater.unconsumed_tail)
    except zlib.error as err:
        raise ToolError("http_fetch: the deflate body is corrupt") from err


def body_text(body: bytes, content_type: str) -> str:
    """What a model reads of ``body``, by the media type in ``content_type``.

    Without a media type, a body with no NUL bytes near its start counts as text.
    """
    if not body:
        return ""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = _charset(params)
    if media in ("text/html", "application/xhtml+xml"):
        return html_to_text(_decode(body, charset)).render()
    textual = (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith(("+json", "+xml"))
        or (not media and b"\x00" not in body[:1024])
    )
    if textual:
        return _decode(body, charset)
    return f"[{len(body)} bytes of {media or 'binary data'} not shown: not text]"


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


_NOT_CHARSETS = frozenset({"punycode", "idna"})
"""Codecs for host names, not bodies; decoding a large body with them is quadratic."""


def _decode(body: bytes, charset: str | None) -> str:
    name = charset or "utf-8"
    try:
        if codecs.lookup(name).name not in _NOT_CHARSETS:
            return body.decode(name, errors="replace")
    except LookupError:  # not a charset Python knows as text: UTF-8 is the best guess
        pass
    return body.decode("utf-8", errors="replace")
