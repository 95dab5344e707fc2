"""Transcript documents as ciphertext: the payload codec applied to the store too.

With ``ONWARD_ENCRYPTION_KEYS`` set, a run's prompts, tool results and
outputs are ciphertext in Temporal's history; the transcript store holds the
same messages and step records, so it seals them with the same codec. A
sealed document is JSON, so every backend (a JSON-lines file, a PostgreSQL
``json`` column) keeps it as it keeps any other::

    {"sealed": "<base64 of the codec-encoded payload of the document>"}

Documents written before encryption was turned on stay plain and are read
as they are; a sealed one read without the keys stops the read with an
:class:`~onward.encryption.EncryptionError` that says so.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from onward.encryption import EncryptionError
from onward.store.base import StoreError

__all__ = ["SEALED_FIELD", "open_documents", "seal_documents"]

SEALED_FIELD = "sealed"
"""The one field of a sealed document."""
_PREFIX = b'{"' + SEALED_FIELD.encode() + b'"'
_PLAIN_JSON = b"json/plain"


async def seal_documents(codec: PayloadCodec | None, documents: Sequence[bytes]) -> list[bytes]:
    """``documents`` sealed by ``codec``; unchanged without one."""
    if codec is None:
        return list(documents)
    payloads = [Payload(metadata={"encoding": _PLAIN_JSON}, data=doc) for doc in documents]
    return [
        json.dumps({SEALED_FIELD: base64.b64encode(sealed.SerializeToString()).decode()}).encode()
        for sealed in await codec.encode(payloads)
    ]


def _sealed_payload(raw: bytes) -> Payload | None:
    if not raw.lstrip().startswith(_PREFIX):
        return None  # a plain document (no contract model has a "sealed" field first)
    try:
        payload = Payload()
        payload.ParseFromString(base64.b64decode(json.loads(raw)[SEALED_FIELD], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise StoreError(f"a sealed transcript document is damaged: {err}") from None
    return payload


async def open_documents(codec: PayloadCodec | None, raws: Sequence[bytes]) -> list[bytes]:
    """``raws`` with every sealed document opened by ``codec`` (plain ones as they are).

    Raises:
        EncryptionError: a document is sealed and ``codec`` is None, or cannot be opened.
        StoreError: a sealed document is damaged.
    """
    sealed = {index: p for index, raw in enumerate(raws) if (p := _sealed_payload(raw))}
    if not sealed:
        return list(raws)
    if codec is None:
        raise EncryptionError(
            "the transcript store holds encrypted documents: set ONWARD_ENCRYPTION_KEYS "
            "to the keys of the workers that wrote them"
        )
    opened = dict(zip(sealed, await codec.decode(list(sealed.values())), strict=True))
    return [opened[index].data if index in opened else raw for index, raw in enumerate(raws)]
