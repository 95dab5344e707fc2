"""History events with their payloads opened by the codec, for readers that decode payloads.

Workers and clients encode and decode through the data converter, but the
readers of raw history (``onward steps``, ``trace``, ``report``, ``status`` of
a closed run, the HTTP API's event stream) hand payloads straight to the
payload converter. With ``ONWARD_ENCRYPTION_KEYS`` set those payloads are
ciphertext, so every event passes through :func:`opened` first: each payload
in it is decrypted in place. Without keys, an encrypted payload stops the
read with an :class:`~onward.encryption.EncryptionError` that says so,
instead of steps that silently show nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import PayloadCodec

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


async def opened(event: HistoryEvent, codec: PayloadCodec | None) -> HistoryEvent:
    """``event`` with every payload decoded by ``codec`` (in place; returned for chaining).

    Raises:
        EncryptionError: a payload is encrypted and ``codec`` is None, or its
            key is not among the codec's keys.
    """
    payloads = list(_payloads_in(event))
    if codec is None:
        if any(payload.metadata.get("encoding") == ENCODING for payload in payloads):
            raise EncryptionError(
                "this run's payloads are encrypted: set ONWARD_ENCRYPTION_KEYS to the keys "
                "its workers use to read it"
            )
        return event
    if payloads:
        for payload, plain in zip(payloads, await codec.decode(payloads), strict=True):
            if plain is not payload:
                payload.CopyFrom(plain)
    return event


async def opened_events(
    events: AsyncIterator[HistoryEvent], codec: PayloadCodec | None
) -> AsyncIterator[HistoryEvent]:
    """``events`` opened one by one (see :func:`opened`).

    ``codec`` is the one of the client that fetched them (the CLI's is
    ``DATA_CONVERTER.payload_codec``).
    """
    async for event in events:
        yield await opened(event, codec)
