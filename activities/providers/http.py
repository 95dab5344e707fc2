"""One JSON-over-HTTP connection to a model provider, shared by every call of a worker.

The ``httpx.AsyncClient`` is created once per provider (on its first call)
and closed by :meth:`ProviderHttp.aclose` when the worker shuts down. It never retries on
its own (``retries=0``): Temporal owns retries, so every failure becomes one
``ApplicationError`` here (see :mod:`onward.activities.providers.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from temporalio.exceptions import ApplicationError

from onward.activities.providers.errors import (
    BAD_PROVIDER_RESPONSE,
    INVALID_REQUEST,
    PROVIDER_CONNECTION_ERROR,
    PROVIDER_TIMEOUT,
    error_for_status,
    error_message_from_body,
    parse_retry_after,
    redact,
    retry_delay,
)
from onward.activities.providers.settings import ModelCallSettings

__all__ = ["CONNECT_RETRY_DELAY", "ProviderHttp"]

_SNIPPET_CHARS = 200
CONNECT_RETRY_DELAY = timedelta(seconds=1)
"""The wait between attempts when no connection could be made (8 attempts: about 7 s)."""


class ProviderHttp:
    """POSTs JSON to one provider and returns the decoded JSON answer.

    Args:
        provider: name used at the start of every error message.
        base_url: the provider's base URL; request paths are relative to it.
        headers: sent with every request (auth headers included).
        secrets: texts never to show in an error message (the API key).
        key_env: the variable holding the key, named in 401/403 hints.
        settings: timeouts and the Retry-After cap.
        transport: an httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        secrets: tuple[str, ...],
        key_env: str | None,
        settings: ModelCallSettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        parts = urlsplit(base_url)
        password = parts.password or ""
        # Messages show the URL without user:password, and never the password.
        self._shown_url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._secrets = tuple(s for s in (*secrets, password, unquote(password)) if s)
        self._key_env = key_env
        self._settings = settings
        self._headers = httpx.Headers(headers)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _connection(self) -> httpx.AsyncClient:
        # Created on first use, not at startup: loading the CA bundle takes a
        # noticeable moment, and a worker pays it only for providers it calls.
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=httpx.Timeout(
                    self._settings.timeout_s, connect=self._settings.connect_timeout_s
                ),
                # retries=0: a refused connection is Temporal's to retry, with backoff and a limit.
                transport=self._transport or httpx.AsyncHTTPTransport(retries=0),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool (on worker shutdown); a later call opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def post_json(self, path: str, payload: dict[str, Any], *, model: str) -> dict[str, Any]:
        """POST ``payload`` to ``path`` and return the JSON object answered.

        Raises:
            ApplicationError: for every failure, typed and marked retryable or
                not as described in :mod:`onward.activities.providers.errors`.
        """
        with self._failures():
            # httpx's timeouts bound each read; this bounds the whole answer (a trickle).
            async with asyncio.timeout(self._settings.timeout_s):
                response = await self._connection().post(path, json=payload)
        self._check(response, response.content, model)
        return self._decode(response)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Turn what httpx raises (and the whole-answer timeout) into typed errors."""
        no_answer = (
            f"no answer within {self._settings.timeout_s:g} s "
            "(raise ONWARD_MODEL_TIMEOUT_S on the worker to wait longer)"
        )
        try:
            yield
        except TimeoutError:
            raise ApplicationError(
                f"{self.provider}: {no_answer} (TimeoutError)", type=PROVIDER_TIMEOUT
            ) from None
        except httpx.TimeoutException as err:
            if isinstance(err, httpx.ConnectTimeout):
                what = f"could not connect within {self._settings.connect_timeout_s:g} s"
            else:
                what = no_answer
            raise ApplicationError(
                f"{self.provider}: {what} ({type(err).__name__})", type=PROVIDER_TIMEOUT
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as err:
            raise ApplicationError(
                f"{self.provider}: the base URL {self._redact(self._shown_url)!r} is not usable "
                f"({self._redact(str(err))}); it must look like https://host/path",
                type=INVALID_REQUEST,
                non_retryable=True,
            ) from None
        except (httpx.LocalProtocolError, UnicodeEncodeError) as err:
            # Not str(err): it quotes the offending header, which may be the key in a
            # form (repr-escaped) that redaction cannot find.
            raise ApplicationError(
                f"{self.provider}: a request header has characters HTTP cannot carry "
                f"({type(err).__name__}); check the API key and the endpoint's headers "
                "on the worker",
                type=INVALID_REQUEST,
                non_retryable=True,
            ) from None
        except httpx.TransportError as err:
            detail = self._redact(str(err)) or type(err).__name__
            # No connection at all (refused, unknown host) is usually a server that is
            # not running or a wrong address: retried at a short fixed pace, so the run
            # fails in seconds instead of after minutes of backoff meant for rate limits.
            refused = isinstance(err, httpx.ConnectError)
            raise ApplicationError(
                f"{self.provider}: cannot reach {self._redact(self._shown_url)}: {detail}",
                type=PROVIDER_CONNECTION_ERROR,
                next_retry_delay=CONNECT_RETRY_DELAY if refused else None,
            ) from None
        except httpx.RequestError as err:  # an undecodable body, say: worth another attempt
            raise ApplicationError(
                f"{self.provider}: {type(err).__name__}: {self._redact(str(err))}",
                type=BAD_PROVIDER_RESPONSE,
            ) from None

    def _check(self, response: httpx.Response, content: bytes, model: str) -> None:
        """Raise the typed error of a redirect or an error status."""
        if response.is_redirect:
            # An http:// base URL on an https-only host, usually: a person must fix it.
            target = self._redact(response.headers.get("location", "?"))
            raise ApplicationError(
                f"{self.provider}: {response.status_code} redirect to {target}; "
                "set the provider's base URL to the final address",
                type=INVALID_REQUEST,
                non_retryable=True,
            )
        if response.status_code >= 400:
            detail = error_message_from_body(content, self._secrets)
            retry_after = parse_retry_after({k.lower(): v for k, v in response.headers.items()})
            raise error_for_status(
                self.provider,
                response.status_code,
                detail,
                model=model,
                key_env=self._key_env,
                delay=retry_delay(retry_after, self._settings.max_retry_delay_s),
            ) from None

    async def post_stream(
        self, path: str, payload: dict[str, Any], *, model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """POST ``payload`` and yield the JSON object of each Server-Sent Event answered.

        The whole stream is bounded by the call timeout, like one answer;
        ``data: [DONE]`` ends it.

        Raises:
            ApplicationError: as :meth:`post_json`.
        """
        with self._failures():
            async with (
                asyncio.timeout(self._settings.timeout_s),
                self._connection().stream("POST", path, json=payload) as response,
            ):
                if response.status_code >= 300:
                    self._check(response, await response.aread(), model)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # event names, comments, keep-alives
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise ApplicationError(
                            f"{self.provider}: a streamed event was not valid JSON: "
                            f"{self._redact(data)[:_SNIPPET_CHARS]!r}",
                            type=BAD_PROVIDER_RESPONSE,
                        ) from None
                    if isinstance(event, dict):
                        yield event

    def _decode(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = json.loads(response.content)
        except ValueError:
            # Redacted before the cut, so a key across the cut is not half shown.
            text = response.content.decode(errors="replace")
            snippet = self._redact(text)[:_SNIPPET_CHARS]
            raise ApplicationError(
                f"{self.provider}: the answer (HTTP {response.status_code}) was not valid JSON: "
                f"{snippet!r}",
                type=BAD_PROVIDER_RESPONSE,
            ) from None
        if not isinstance(data, dict):
            raise ApplicationError(
                f"{self.provider}: expected a JSON object, got {type(data).__name__}",
                type=BAD_PROVIDER_RESPONSE,
            )
        return data

    def bad_shape(self, what: str) -> ApplicationError:
        """The error for a JSON answer that is not shaped like the protocol (retried)."""
        return ApplicationError(
            f"{self.provider}: unexpected response shape: {self._redact(what)}",
            type=BAD_PROVIDER_RESPONSE,
        )
