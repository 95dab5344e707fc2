"""A PostgreSQL store URL shown without its password, and libpq's errors scrubbed of it.

A password may sit in a URL's ``user:password@``, in a ``?password=``
parameter, or in a ``key=value`` string's ``password=``; written with an
unencoded ``/``, ``@`` or ``%`` it is misread (or refused) by libpq, whose
errors then quote parts of it. Every message that names the store goes
through :func:`redacted` and :func:`scrubbed`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = ["misread_password", "redacted", "scrubbed"]

_MASK = "***"
_URL_SCHEMES = ("postgresql://", "postgres://")
_USERINFO = re.compile(r"^(?P<scheme>[a-z]+://)(?P<user>[^:?/]*):(?P<password>.*)@$", re.DOTALL)
_LIBPQ_USERINFO = re.compile(r"^(?P<head>[a-z]+://[^:/?@]*:)(?P<password>[^@/]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:ssl)?password=)(?P<password>[^&#]*)")
_KEYWORD_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S*)")


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """A URL as (``scheme://user:``, its password or None, ``@host...``).

    The user info runs to the last ``@`` before the query, so a password with
    an unencoded ``/``, ``@`` or ``%`` is found whole; libpq ends it at the
    first ``@`` or ``/`` (and refuses a stray ``%``).
    """
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    if "@" in authority:  # an @ after the path is the database's (team@corp)
        end = len(scheme) + 3 + authority.rfind("@")
    else:  # none before the first /: a password with an unencoded / (u:pa/ss@host)
        end = url.split("?", 1)[0].rfind("@")
    found = _USERINFO.match(url[: end + 1]) if end >= 0 else None
    if found is None:
        return url, None, ""
    return f"{found['scheme']}{found['user']}:", found["password"], url[end:]


def _libpq_reading(url: str) -> dict[str, str] | None:
    """What libpq reads from ``url``, or None when it cannot parse it."""
    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except psycopg.Error:
        return None


def _libpq_password(url: str) -> str | None:
    """The password libpq reads from ``url``: None when it reads none or cannot parse it."""
    return (_libpq_reading(url) or {}).get("password") or None


def _passwords(url: str) -> set[str]:
    """Every spelling of ``url``'s password: as written, percent-decoded and as libpq reads it."""
    found: set[str] = set()
    if url.startswith(_URL_SCHEMES):
        found.add(_split_userinfo(url)[1] or "")
        found.update(match["password"] for match in _QUERY_PASSWORD.finditer(url))
    else:
        found.update(match["password"].strip("'") for match in _KEYWORD_PASSWORD.finditer(url))
    found.add(_libpq_password(url) or "")
    spellings = found | {unquote(secret) for secret in found}
    return {secret for secret in spellings if secret}


def redacted(url: str) -> str:
    """``url`` without its password (``postgresql://onward:***@host/db``).

    The password goes wherever the URL holds it: ``user:password@`` (also with
    an unencoded ``/``, ``@`` or ``%`` in it), a ``?password=`` parameter, or the
    ``password=`` keyword of a ``key=value`` string (all that follows the
    keyword, when the string does not parse).
    """
    if url.startswith(_URL_SCHEMES):
        head, password, tail = _split_userinfo(url)
        if password is not None:
            url = f"{head}{_MASK}{tail}"
        else:  # user info libpq ends at its first @, with a ? in the password (u:p?x@host)
            read, found = _libpq_password(url), _LIBPQ_USERINFO.match(url)
            if read is not None and found and unquote(found["password"]) == read:
                url = f"{found['head']}{_MASK}{url[found.end('password') :]}"
        return _QUERY_PASSWORD.sub(rf"\g<key>{_MASK}", url)
    if _libpq_reading(url) is None:
        return re.sub(r"\bpassword\b.*", f"password={_MASK}", url, flags=re.DOTALL)
    return _KEYWORD_PASSWORD.sub(rf"\g<key>{_MASK}", url)


def scrubbed(text: str, url: str) -> str:
    """``text`` (worded by libpq or the pool) without ``url``'s password in any spelling."""
    text = text.replace(url, redacted(url))
    for secret in sorted(_passwords(url), key=len, reverse=True):  # "a%25b" before "a%b"
        text = text.replace(secret, _MASK)
    return text


def misread_password(url: str) -> bool:
    """Whether libpq reads a password other than the one ``url`` holds.

    ``postgresql://u:pa/ss@host/db`` is host ``u``, port ``pa`` and database
    ``ss@host/db`` to libpq, and ``u:p@ss@host`` is password ``p`` at host
    ``ss@host``: the errors that follow would quote part of the password.
    """
    reading = _libpq_reading(url) if url.startswith(_URL_SCHEMES) else None
    password = _split_userinfo(url)[1]
    if reading is None or password is None:
        return False  # no password, or a URL libpq refuses (its error is scrubbed)
    return reading.get("password", "") != unquote(password)
