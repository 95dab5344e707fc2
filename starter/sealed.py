"""History events with their payloads opened by the data converter, for readers of payloads.

Workers and clients encode and decode through the data converter, but the
readers of raw history (``onward steps``, ``trace``, ``report``, ``status`` of
a closed run, the HTTP API's event stream) hand payloads straight to the
payload converter. A payload in a history may be ciphertext (with
``ONWARD_ENCRYPTION_KEYS``) or a reference to one kept in external storage
(``ONWARD_PAYLOADS``: a result or tool output over the threshold), so every
event passes through :func:`opened` first: each payload in it is fetched and
decrypted in place, as the converter does for a client. Without keys, an
encrypted payload stops the read with an
:class:`~onward.encryption.EncryptionError` that says so, instead of steps
that silently show nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import DataConverter

from onward.encryption import ENCODING, EncryptionError

__all__ = ["opened", "opened_events"]


def _payloads_in(message: Message) -> Iterator[Payload]:
    """Every payload in ``message``, at any depth (fields, repeated fields, maps)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue  # a scalar
        if isinstance(value, Message):
            items = [value]
        elif field.message_type.GetOptions().map_entry:
            items = list(value.values())
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from _payloads_in(item)


async def opened(event: HistoryEvent, converter: DataConverter) -> HistoryEvent:
    """``event`` with every payload fetched and decoded (in place; returned for chaining).

    Raises:
        EncryptionError: a payload is encrypted and ``converter`` has no codec,
            or its key is not among the codec's keys.
        StoreError: a stored payload is not where ``converter`` looks.
    """
    payloads = list(_payloads_in(event))
    if not payloads:
        return event
    if converter.payload_codec is None:
        if any(payload.metadata.get("encoding") == ENCODING for payload in payloads):
            raise EncryptionError(
                "this run's payloads are encrypted: set ONWARD_ENCRYPTION_KEYS to the keys "
                "its workers use to read it"
            )
        if converter.external_storage is None or not any(p.external_payloads for p in payloads):
            return event  # nothing to open: the common case, without copies
    # The converter's own inbound path, as for a client: the reference's codec,
    # the fetch from external storage, then the codec. (No public in-place form.)
    wrapper = Payloads(payloads=payloads)
    await converter._transform_inbound_payloads(wrapper)
    for payload, plain in zip(payloads, wrapper.payloads, strict=True):
        payload.CopyFrom(plain)
    return event


async def opened_events(
    events: AsyncIterator[HistoryEvent], converter: DataConverter
) -> AsyncIterator[HistoryEvent]:
    """``events`` opened one by one (see :func:`opened`).

    ``converter`` is the one of the client that fetched them (the CLI's is
    ``DATA_CONVERTER``).
    """
    async for event in events:
        yield await opened(event, converter)
