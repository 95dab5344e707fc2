"""Webhook signatures: ``Onward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

The secret is ``ONWARD_WEBHOOK_SECRET``. A receiver recomputes the HMAC over
the timestamp and the raw body with the same secret and compares in constant
time; the timestamp in the signed text stops an old delivery from being
replayed later (:func:`verify` refuses one older than ``tolerance_s``).

Verifying in a receiver, with nothing but the standard library::

    import hashlib, hmac, time

    def verify(header: str, body: bytes, secret: str) -> bool:
        fields = dict(part.split("=", 1) for part in header.split(","))
        signed = fields["t"].encode() + b"." + body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(fields["t"])) < 300
        return fresh and hmac.compare_digest(expected, fields["v1"])
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

__all__ = ["SIGNATURE_HEADER", "TOLERANCE_S", "sign", "verify"]

SIGNATURE_HEADER = "Onward-Signature"
TOLERANCE_S = 300
"""How old a signed delivery may be before :func:`verify` refuses it."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Onward-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    header: str,
    body: bytes,
    secret: str,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is no older than ``tolerance_s``
    (at ``now``, a Unix time; by default the current one)."""
    now = time.time() if now is None else now
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if equals:
            fields.setdefault(name, value)
    # A header is whatever a sender put there: ASCII only, or int() takes Arabic-Indic digits and
    # compare_digest raises TypeError on a non-ASCII string instead of answering False.
    signed_at, signature = fields.get("t", ""), fields.get("v1", "")
    if not (signed_at.isascii() and signed_at.isdigit() and signature.isascii()):
        return False
    timestamp = int(signed_at)
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(_digest(secret, timestamp, body), signature)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be posted to (a malformed or out-of-range port), or None."""
    try:
        port = urlsplit(url).port  # ValueError: not a number, or not 0-65535
    except ValueError as err:
        return str(err)
    if port == 0:
        return "port 0 is no port to post to"
    return None
