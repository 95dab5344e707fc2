"""``deliver_webhook``: POST a finished run's result to its ``webhook_url``, signed.

The body is ``{"id": <run id>, "delivery": <delivery id>, "result": <AgentResult>}``;
the header ``Onward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
signs it with ``ONWARD_WEBHOOK_SECRET`` (see :mod:`onward.webhooks` for verifying
it). The delivery id (also the ``Onward-Delivery`` header) is the same on every
attempt of one delivery, so a receiver can drop a repeat: the body's, which the
signature covers, not the header's alone, which whoever replays a delivery within
the signature's tolerance could change. Temporal retries the activity with back-off: a receiver that
is down or answers 5xx, 408 or 429 is tried again; any other 4xx is final. The
secret stays in the worker's environment and never reaches workflow history.

Whoever starts a run chooses its URL (a client of the HTTP API too), so the
worker does not POST into its own network: the receiver's name is resolved,
every address is checked as ``http_fetch`` checks them (no loopback, private,
link-local or other non-public address unless ``ONWARD_WEBHOOK_ALLOW`` lists
it, see :mod:`onward.activities.tools.net_guard`), and the connection goes to
a checked address. Redirects are not followed, and proxies from the
environment are not used (the check would not hold behind one).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward.activities.tools.net_guard import (
    AddressRefused,
    AllowList,
    IPAddress,
    Resolver,
    allowed_addresses,
    pinned_request,
    resolve,
)
from onward.contracts import WebhookDelivery, WebhookOutcome
from onward.webhooks import SIGNATURE_HEADER, sign, url_problem

__all__ = [
    "DELIVERY_HEADER",
    "WEBHOOK_ALLOW_ENV",
    "WEBHOOK_SECRET_ENV",
    "WEBHOOK_TIMEOUT_S",
    "WebhookActivities",
]

WEBHOOK_SECRET_ENV = "ONWARD_WEBHOOK_SECRET"
WEBHOOK_ALLOW_ENV = "ONWARD_WEBHOOK_ALLOW"
"""Addresses, CIDR ranges and host names of receivers inside the worker's network."""
DELIVERY_HEADER = "Onward-Delivery"
"""The delivery's id (workflow id, Temporal run id and activity id): equal on every retry
of one delivery, and another for each run, also of a reused workflow id."""
WEBHOOK_TIMEOUT_S = 10.0
"""One POST may take this long before the attempt counts as failed."""
WEBHOOK_CONNECT_TIMEOUT_S = 3.0
"""Connecting to one of the receiver's addresses may take this long before the next is
tried (an unreachable IPv6 address, say, before the IPv4 one)."""
WEBHOOK_POST_BUDGET_S = 13.0
"""One attempt (the name's lookup and every address tried) takes at most this long:
under the activity's 15 s, so a slow resolver or a name with many unreachable
addresses fails the attempt as a timeout of its own (retried) instead of being cut
off by Temporal."""
_RETRYABLE_STATUS = frozenset({408, 429})


class WebhookActivities:
    """Delivers run results to webhooks.

    Args:
        secret: the signing secret (``ONWARD_WEBHOOK_SECRET``); None: deliveries
            fail at once, naming the setting, and the run is not affected.
        allow: receivers that may be at non-public addresses
            (``ONWARD_WEBHOOK_ALLOW``); default: public addresses only.
        resolver: name lookup (tests); default: the event loop's ``getaddrinfo``.
        transport: makes an httpx transport for each delivery (tests); default: the
            network, trusting ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (a
            receiver inside the worker's network may have a private CA's certificate).
    """

    def __init__(
        self,
        secret: str | None,
        *,
        allow: AllowList | None = None,
        resolver: Resolver = resolve,
        transport: Callable[[], httpx.AsyncBaseTransport] = httpx.AsyncHTTPTransport,
    ) -> None:
        self._secret = secret or None
        self._allow = allow or AllowList()
        self._resolver = resolver
        self._transport = transport

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, delivery: WebhookDelivery) -> WebhookOutcome:
        """POST the signed result; raise so Temporal retries a receiver that is not ready."""
        info = activity.info()
        if self._secret is None:
            raise ApplicationError(
                f"{WEBHOOK_SECRET_ENV} is not set on the worker: webhooks are not sent unsigned",
                type="WebhookNotConfigured",
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        problem = url_problem(delivery.url)
        if problem is not None:  # no attempt would do: said once, not retried
            raise _failure(f"webhook_url: {problem}", False)
        url = httpx.URL(delivery.url)
        ends = asyncio.get_running_loop().time() + WEBHOOK_POST_BUDGET_S
        try:
            async with asyncio.timeout_at(ends):
                addresses = await self._addresses(url)
        except TimeoutError:
            raise _failure(
                f"webhook_url: no answer from DNS for {url.host} within "
                f"{WEBHOOK_POST_BUDGET_S:g} s",
                True,
            ) from None
        # The run's own id too: a closed run's workflow id may start another run, whose
        # delivery a receiver dropping repeats must not take for this one's.
        delivery_id = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
        body = json.dumps(
            {
                "id": delivery.run_id,
                "delivery": delivery_id,
                "result": delivery.result.model_dump(mode="json"),
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret, int(time.time())),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            response = await self._post(url, addresses, body, headers, ends)
        except httpx.HTTPError as err:
            raise _failure(f"webhook POST failed: {type(err).__name__}: {err}", True) from None
        status = response.status_code
        if 200 <= status < 300:
            return WebhookOutcome(status_code=status, attempt=info.attempt)
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        raise _failure(f"webhook receiver answered {status}", retryable, status)

    async def _addresses(self, url: httpx.URL) -> list[IPAddress]:
        """The receiver's addresses, all allowed; a final failure naming one that is not."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            return await allowed_addresses(host, port, self._allow, self._resolver)
        except OSError as err:  # DNS may be back at the next attempt
            reason = err.strerror or str(err)
            raise _failure(f"webhook_url: cannot resolve {host}: {reason}", True) from None
        except AddressRefused as err:
            hint = f"set {WEBHOOK_ALLOW_ENV} on the worker to allow it"
            raise _failure(f"webhook_url: {err}; {hint}", False) from None

    async def _post(
        self,
        url: httpx.URL,
        addresses: Sequence[IPAddress],
        body: bytes,
        headers: dict[str, str],
        ends: float,
    ) -> httpx.Response:
        """One POST to the first checked address that accepts a connection (a client
        of its own each time, see :func:`pinned_request`), by ``ends`` (loop time)."""
        loop = asyncio.get_running_loop()
        tried = 0
        last_error: httpx.TransportError | None = None
        for address in addresses:
            left = ends - loop.time()
            if left <= 0:
                break
            tried += 1
            # trust_env=False: no proxy from the environment (the transport still reads
            # SSL_CERT_FILE and SSL_CERT_DIR).
            async with httpx.AsyncClient(
                transport=self._transport(),
                timeout=httpx.Timeout(
                    min(WEBHOOK_TIMEOUT_S, left), connect=min(WEBHOOK_CONNECT_TIMEOUT_S, left)
                ),
                follow_redirects=False,
                trust_env=False,
            ) as client:
                request = pinned_request(client, "POST", url, address, headers, body)
                try:
                    async with asyncio.timeout(left):
                        return await client.send(request)
                except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                    last_error = err  # this address is unreachable; the next one may not be
                except TimeoutError:
                    last_error = None
                    break
        if last_error is not None and tried == len(addresses):
            raise last_error  # every address refused the connection, or did not answer it
        raise httpx.TimeoutException(
            f"no answer within {WEBHOOK_POST_BUDGET_S:g} s ({tried} of {len(addresses)} "
            "address(es) tried)"
        )


def _failure(message: str, retryable: bool, status: int | None = None) -> ApplicationError:
    # Expected failures: one line in the history, no traceback in the worker's log.
    # The receiver's status, when it answered, is the error's detail (the run's events
    # show it).
    return ApplicationError(
        message,
        *(() if status is None else (status,)),
        type="WebhookFailed",
        non_retryable=not retryable,
        category=ApplicationErrorCategory.BENIGN,
    )
