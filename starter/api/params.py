"""The API's query values, read strictly: a bad one is a 422 naming it, never a 500.

``since`` must be a written-out ISO 8601 time Temporal can compare (pydantic
alone would take a bare number as Unix seconds, and a far time zone offset
overflowed); event ids (``after``, ``Last-Event-ID``) are whole numbers below
:data:`MAX_EVENT_ID`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from onward.errors import InvalidInput

__all__ = [
    "MAX_EVENT_ID",
    "PageToken",
    "event_id",
    "event_id_loc",
    "iso_8601",
    "last_event_id",
    "since_utc",
]

PageToken = Annotated[
    str | None, Query(max_length=4000, description="the next page: from the last page's Link")
]
"""A list's ``page_token`` query parameter (see ``Link: <...>; rel="next"``)."""

MAX_EVENT_ID = 2**62
"""Event ids are below this (Temporal's history event ids are 64-bit)."""
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def last_event_id(header: str | None, query: int | None) -> int:
    """Where a stream resumes: ``?after=`` (already checked) or the ``Last-Event-ID`` header."""
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    return event_id(header, "Last-Event-ID")


def event_id_loc(name: str) -> tuple[str, str]:
    """Where event id ``name`` ("after", "Last-Event-ID") is in a request, as FastAPI
    places its own problems (a header by its lower-case name)."""
    return ("header", name.lower()) if name == "Last-Event-ID" else ("query", name)


def event_id(value: str, name: str) -> int:
    """``value`` as an event id, 0 to :data:`MAX_EVENT_ID`; else a 422 naming ``name``
    (``after`` or ``Last-Event-ID``)."""
    try:
        found = int(value.strip())
    except ValueError:
        raise InvalidInput.at(
            event_id_loc(name), "must be an event id (a whole number)", "int_parsing", name
        ) from None
    if not 0 <= found <= MAX_EVENT_ID:
        raise InvalidInput.at(
            event_id_loc(name), f"must be from 0 to {MAX_EVENT_ID}", "int_range", name
        )
    return found


def iso_8601(value: object) -> object:
    """Only a time written out: pydantic would take a bare number as Unix seconds."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an ISO 8601 time such as 2026-12-01T00:00:00Z, not a number")
    return value


def since_utc(since: datetime) -> datetime:
    """``since`` in UTC (naive is UTC), refused when outside what Temporal can compare."""
    try:
        utc = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not _EARLIEST <= utc <= _LATEST:
        raise InvalidInput(
            "since: must be a time between 1970-01-01 and 9999-12-31 (ISO 8601)",
            [{"loc": ["query", "since"], "msg": "out of range", "type": "datetime_range"}],
        )
    return utc
