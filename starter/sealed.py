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

With keys, workers also move each failure's message and stack trace into its
encoded attributes (a provider's error can quote the prompt), so opening an
event puts them back where readers look (``failure.message``), as the SDK's
failure converter does for a client; :func:`opened_pending` does the same for
the last failures of a run's pending activities.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TypeVar

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.converter import DataConverter

from onward.encryption import ENCODING, EncryptionError

__all__ = ["opened", "opened_events", "opened_pending"]

_Found = TypeVar("_Found", bound=Message)


def _found_in(message: Message, kind: type[_Found]) -> Iterator[_Found]:
    """Every ``kind`` in ``message``, at any depth (fields, repeated fields, maps)."""
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
            if isinstance(item, kind):
                yield item
            if isinstance(item, Message) and not isinstance(item, Payload):
                yield from _found_in(item, kind)  # a failure's cause is a failure


def _restore_failures(message: Message, converter: DataConverter) -> None:
    """Put each failure's message and stack trace back from its (opened) encoded attributes."""
    found = _found_in(message, Failure)
    for failure in itertools.chain([message] if isinstance(message, Failure) else [], found):
        if not failure.HasField("encoded_attributes"):
            continue
        try:
            [attributes] = converter.payload_converter.from_payloads([failure.encoded_attributes])
        except Exception:  # noqa: BLE001 - not ours: leave the failure as it came
            continue
        if isinstance(attributes, dict):
            if isinstance(message_text := attributes.get("message"), str):
                failure.message = message_text
            if isinstance(stack_trace := attributes.get("stack_trace"), str):
                failure.stack_trace = stack_trace
            failure.ClearField("encoded_attributes")


async def opened(event: _Found, converter: DataConverter) -> _Found:
    """``event`` (or any message holding payloads) with every payload fetched and decoded
    (in place; returned for chaining).

    Raises:
        EncryptionError: a payload is encrypted and ``converter`` has no codec,
            or its key is not among the codec's keys.
        StoreError: a stored payload is not where ``converter`` looks.
    """
    payloads = list(_found_in(event, Payload))
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
    if converter.payload_codec is not None:  # only workers with keys encode failures
        _restore_failures(event, converter)
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


async def opened_pending(
    pending: Sequence[PendingActivityInfo], converter: DataConverter
) -> list[PendingActivityInfo]:
    """``pending`` (a description's pending activities) with their last failures opened.

    A last failure this process cannot open (no keys, or not the right ones) keeps
    the placeholder message Temporal's failure converter left (``Encoded failure``):
    a run's status does not need its keys while a worker answers for it.
    """
    for info in pending:
        if info.HasField("last_failure"):  # only it: heartbeat details may be stored away
            try:
                await opened(info.last_failure, converter)
            except EncryptionError:
                continue
    return list(pending)
