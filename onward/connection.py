"""Connecting to Temporal the same way from the worker and every client.

Connection settings come from ``temporalio.envconfig`` (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS, and the profile file), read
when a connection is made, never at import. Everyone uses one data converter.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from onward.contracts import COMPACT_PAYLOADS, DEFAULT_TASK_QUEUE
from onward.encryption import SealedPayloadConverter, codec_from_env
from onward.errors import ConnectionFailed, SettingsError
from onward.store.payloads import external_storage

__all__ = [
    "DATA_CONVERTER",
    "DEFAULT_ADDRESS",
    "ConnectionFailed",
    "OnwardPayloadConverter",
    "configured_address",
    "connect",
    "connect_config",
    "connect_with_retry",
    "data_converter",
    "no_poller",
    "read",
    "task_failing",
    "task_queue",
    "unanswered",
]


class _ModelsJSON(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON that validates a model with the model's own validator.

    A model of :data:`~onward.contracts.COMPACT_PAYLOADS` is written without its
    fields at their defaults: they are read back as the same defaults.
    """

    def to_payload(self, value: Any) -> Payload | None:
        if type(value) in COMPACT_PAYLOADS:
            data = value.__pydantic_serializer__.to_json(value, exclude_defaults=True)
            return Payload(metadata={"encoding": self.encoding.encode()}, data=data)
        return super().to_payload(value)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        if isinstance(type_hint, type) and issubclass(type_hint, BaseModel):
            return type_hint.model_validate_json(payload.data)
        return super().from_payload(payload, type_hint)


class OnwardPayloadConverter(PydanticPayloadConverter):
    """Temporal's Pydantic converter, without building a validator per converter.

    The SDK makes a payload converter for every workflow run, and with external
    storage configured for every activity task, activation and heartbeat too;
    Temporal's Pydantic converter then builds a new ``TypeAdapter`` (a schema
    walk and a new validator) the first time each converter meets a type. A
    model class has a validator of its own, built once: payloads of a model
    type are validated with it. Other types (``str``, ``list[...]``) go
    through the SDK's converter, whose adapters all converters share. Same JSON,
    same values; a busy worker spent about 2% of its CPU building adapters
    (``make bench``, 1,000 agents).
    """

    def __init__(self) -> None:
        CompositePayloadConverter.__init__(self, *_CONVERTERS)


_CONVERTERS = (
    *(
        _ModelsJSON() if isinstance(c, JSONPlainPayloadConverter) else c
        for c in DefaultPayloadConverter.default_encoding_payload_converters
    ),
    SealedPayloadConverter(),  # last: it writes nothing, it names the setting a reader lacks
)
"""Shared by every OnwardPayloadConverter: none keeps state but the JSON one's cache of
``TypeAdapter``s (thread-safe), which is then built once per type, not per converter."""


def data_converter(environ: Mapping[str, str]) -> DataConverter:
    """Pydantic JSON, encrypted when asked, with large payloads kept outside the history.

    ``ONWARD_ENCRYPTION_KEYS`` turns on the AES-GCM codec
    (:mod:`onward.encryption`). ``ONWARD_PAYLOADS`` (default ``.onward/payloads``)
    and ``ONWARD_PAYLOAD_THRESHOLD`` configure the external storage; every
    process that reads a run's payloads must see the same place and keys.

    The SDK encodes with the codec first and stores afterwards (and reads
    back in reverse), so a payload kept in external storage is ciphertext too.
    With the codec, failures keep their message and stack trace in their
    encoded attributes, which it encrypts: a provider's error can quote the
    prompt (readers of raw history put them back, see ``onward.starter.sealed``).

    Raises:
        ValueError: a bad ``ONWARD_PAYLOAD_THRESHOLD``.
        EncryptionError: a malformed ``ONWARD_ENCRYPTION_KEYS``.
    """
    codec = codec_from_env(environ)
    failures = DefaultFailureConverterWithEncodedAttributes if codec else DefaultFailureConverter
    return DataConverter(
        payload_converter_class=OnwardPayloadConverter,
        payload_codec=codec,
        failure_converter_class=failures,
        external_storage=external_storage(environ),
    )


DATA_CONVERTER: DataConverter = data_converter(os.environ)
"""The one converter of the worker, every client and the replayer (read at import: the
worker, clients and the replayer are processes whose environment is set before)."""

DEFAULT_ADDRESS = "localhost:7233"
"""Where clients and the worker look for Temporal when nothing says otherwise."""

log = logging.getLogger("onward")


def task_queue(environ: Mapping[str, str] | None = None) -> str:
    """``ONWARD_TASK_QUEUE``, or ``onward``.

    Raises:
        SettingsError: a blank name, or one with spaces around it.
    """
    env = os.environ if environ is None else environ
    name = env.get("ONWARD_TASK_QUEUE") or DEFAULT_TASK_QUEUE
    if not name.strip() or name != name.strip():
        # A worker would poll a queue named "  ", which no client starts runs on.
        raise SettingsError(f"ONWARD_TASK_QUEUE={name!r}: a name without spaces around it")
    return name


def _profile_config(environ: Mapping[str, str] | None) -> dict[str, Any]:
    """envconfig's connection settings (``TEMPORAL_*``, the profile file).

    Raises:
        SettingsError: the profile or its file is bad (envconfig raises a bare
            ``RuntimeError``, which would read as a crash).
    """
    try:
        return dict(
            ClientConfig.load_client_connect_config(
                override_env_vars=dict(os.environ if environ is None else environ)
            )
        )
    except RuntimeError as err:
        raise SettingsError(f"{err} (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)") from err


def configured_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The address ``TEMPORAL_ADDRESS`` or the envconfig profile names; None if neither does."""
    address = _profile_config(environ).get("target_host")
    return str(address) if address else None


def connect_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` from the environment and profile file."""
    config = _profile_config(environ)
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config["data_converter"] = DATA_CONVERTER
    return config


async def connect(environ: Mapping[str, str] | None = None, **overrides: Any) -> Client:
    """Connect once; raise :class:`ConnectionFailed` with the address on failure."""
    config = connect_config(environ) | overrides
    try:
        return await Client.connect(**config)
    except RuntimeError as err:
        address = str(config["target_host"])
        where = f"{address} (namespace {config.get('namespace', 'default')})"
        raise ConnectionFailed(f"cannot reach Temporal at {where}: {err}", address) from err


READ_ATTEMPTS = 3
"""How often :func:`read` sends a read-only call that came back CANCELLED."""

_Response = TypeVar("_Response")


async def read(call: Callable[..., Awaitable[_Response]], request: Any) -> _Response:
    """``call(request)``, a read-only RPC of the SDK's services, made to last through a
    dropped connection.

    The SDK's own retries (``retry=True``: UNAVAILABLE, RESOURCE_EXHAUSTED...) leave
    CANCELLED alone, and a loaded machine has answered ``DescribeTaskQueue`` with
    CANCELLED "operation was canceled" though nobody cancelled it (a connection
    dropped under the call): a read is safe to send again. The caller's own cancel
    is a ``CancelledError``, never this.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return await call(request, retry=True)
        except RPCError as err:
            if err.status != RPCStatusCode.CANCELLED or attempt == READ_ATTEMPTS:
                raise
            log.info("%s came back CANCELLED (%s); sending it again", type(request).__name__, err)
            await asyncio.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def no_poller(err: RPCError) -> bool:
    """Whether the server refused a query or an update because no worker polled the
    run's task queue for a while: nothing was kept, so it is safe to send again.

    A server says so about 20 s after the last worker stopped polling, while
    ``DescribeTaskQueue`` still lists that worker (for up to 75 s); before, a
    query or update waits for a worker until its deadline.
    """
    return err.status == RPCStatusCode.FAILED_PRECONDITION and "no poller" in err.message


def unanswered(err: RPCError) -> bool:
    """Whether no worker answered a query (read the history instead): none in time, none
    polling (:func:`no_poller`), or the run's workflow task failing on its worker (the
    server answers FAILED_PRECONDITION "Workflow Task in failed state")."""
    return err.status in (
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.FAILED_PRECONDITION,
    )


def task_failing(err: RPCError) -> bool:
    """Whether the server refused a query because the run's workflow task keeps failing
    (a worker polls, but cannot go on with the run: its log says why)."""
    return err.status == RPCStatusCode.FAILED_PRECONDITION and "failed state" in err.message


async def connect_with_retry(
    environ: Mapping[str, str] | None = None,
    *,
    first_delay_s: float = 0.5,
    max_delay_s: float = 10.0,
    **overrides: Any,
) -> Client:
    """Connect, waiting with exponential backoff while the server is unreachable.

    A worker may start before its server (``make demo`` starts both), so it
    waits instead of exiting.
    """
    delay = first_delay_s
    while True:
        try:
            return await connect(environ, **overrides)
        except ConnectionFailed as err:
            log.warning("%s; retrying in %.1f s", err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
