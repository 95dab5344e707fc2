"""Payload encryption: prompts, tool results and outputs as ciphertext in Temporal's history.

On when ``ONWARD_ENCRYPTION_KEYS=<key id>:<base64 of 32 bytes>[,...]`` is set
for workers, clients, the HTTP API and the codec server alike. Each payload is
sealed with AES-256-GCM under the FIRST key; its key id travels in the
payload's metadata, so every listed key can decrypt: add a new key in front
to rotate, and drop an old one once no history needs it. The whole original
payload (metadata included) is sealed, so not even the encoding leaks.

A payload not encrypted by this codec (written before encryption was turned
on) passes through unchanged, so turning it on never breaks old runs.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import EncodingPayloadConverter, PayloadCodec

from onward.errors import OnwardError, SettingsError

__all__ = [
    "ENCODING",
    "KEY_ID_METADATA",
    "EncryptionCodec",
    "EncryptionError",
    "KeySettingError",
    "SealedPayloadConverter",
    "codec_from_env",
    "parse_keys",
]

ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of a sealed payload (the name Temporal's samples use)."""
KEY_ID_METADATA = "encryption-key-id"
_NONCE_BYTES = 12
_TAG_BYTES = 16
"""GCM's authentication tag, at the end of every sealed payload's data."""
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class EncryptionError(OnwardError):
    """A key setting is malformed, or a payload cannot be decrypted with the keys given."""


class KeySettingError(EncryptionError, SettingsError):
    """``ONWARD_ENCRYPTION_KEYS`` is malformed: a bad setting (exit 2), named, no key shown."""


def parse_keys(setting: str) -> dict[str, bytes]:
    """``id:base64,id2:base64`` as an ordered mapping of key id to 32-byte key.

    Raises:
        KeySettingError: naming the entry that is malformed (never echoing a key).
    """
    keys: dict[str, bytes] = {}
    for number, entry in enumerate(filter(None, (e.strip() for e in setting.split(","))), 1):
        key_id, colon, encoded = entry.partition(":")
        if not colon or not _KEY_ID.fullmatch(key_id):
            raise KeySettingError(
                f"ONWARD_ENCRYPTION_KEYS entry {number}: write <key id>:<base64 of 32 bytes>, "
                "the id of 1-64 letters, digits, '.', '_' or '-'"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise KeySettingError(
                f"ONWARD_ENCRYPTION_KEYS key {key_id!r} is not valid base64"
            ) from None
        if len(key) != 32:
            raise KeySettingError(
                f"ONWARD_ENCRYPTION_KEYS key {key_id!r} has {len(key)} bytes; AES-256 needs 32"
            )
        if key_id in keys:
            raise KeySettingError(f"ONWARD_ENCRYPTION_KEYS names key {key_id!r} twice")
        keys[key_id] = key
    if not keys:
        raise KeySettingError("ONWARD_ENCRYPTION_KEYS is set but names no key")
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads, with key rotation by key id (see the module docstring)."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise EncryptionError("EncryptionCodec needs at least one key")
        # Imported here: a process without keys (most workers) does not load it (7 MB).
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._invalid_tag: type[Exception] = InvalidTag  # decrypt's integrity failure
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = next(iter(keys))

    @property
    def key_ids(self) -> list[str]:
        """The key ids, the one that encrypts first."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        sealed = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), None)
            sealed.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: self._current.encode()},
                    data=data,
                )
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # from before encryption was turned on
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionError(
                f"a payload is encrypted with key {key_id!r}, which ONWARD_ENCRYPTION_KEYS "
                f"does not list (it lists {', '.join(self._ciphers)})"
            )
        altered = EncryptionError(
            f"a payload encrypted with key {key_id!r} fails its integrity check: "
            "the key is wrong or the payload was altered"
        )
        if len(payload.data) < _NONCE_BYTES + _TAG_BYTES:
            raise altered  # cut short: AESGCM would raise ValueError on a short nonce
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, None)
        except self._invalid_tag:
            raise altered from None
        opened = Payload()
        opened.ParseFromString(plain)
        return opened


class SealedPayloadConverter(EncodingPayloadConverter):
    """What the payload converter does with a sealed payload no codec opened: say so.

    With the keys the codec opens every sealed payload before the converter sees
    it; a process without them (a worker started without the setting, a client)
    would otherwise fail on ``KeyError: 'Unknown payload encoding
    binary/encrypted'``. It never writes a payload.
    """

    @property
    def encoding(self) -> str:
        return ENCODING.decode()

    def to_payload(self, value: object) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> object:
        raise EncryptionError(
            "a payload is encrypted (binary/encrypted): set ONWARD_ENCRYPTION_KEYS on this "
            "process to the keys of the processes that wrote it"
        )


def codec_from_env(environ: Mapping[str, str]) -> EncryptionCodec | None:
    """The codec ``ONWARD_ENCRYPTION_KEYS`` asks for, or None when it is not set."""
    setting = environ.get("ONWARD_ENCRYPTION_KEYS")
    return EncryptionCodec(parse_keys(setting)) if setting else None
