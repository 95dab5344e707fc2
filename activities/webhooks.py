"""``deliver_webhook``: POST a finished run's result to its ``webhook_url``, signed.

The body is ``{"id": <run id>, "result": <AgentResult>}``; the header
``Onward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` signs
it with ``ONWARD_WEBHOOK_SECRET`` (see :mod:`onward.webhooks` for verifying it).
``Onward-Delivery`` is the same on every attempt of one delivery, so a receiver
can drop a repeat. Temporal retries the activity with back-off: a receiver that
is down or answers 5xx, 408 or 429 is tried again; any other 4xx is final. The
secret stays in the worker's environment and never reaches workflow history.
"""

from __future__ import annotations

import json
import time

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward.contracts import WebhookDelivery, WebhookOutcome
from onward.webhooks import SIGNATURE_HEADER, sign

__all__ = ["DELIVERY_HEADER", "WEBHOOK_SECRET_ENV", "WEBHOOK_TIMEOUT_S", "WebhookActivities"]

WEBHOOK_SECRET_ENV = "ONWARD_WEBHOOK_SECRET"
DELIVERY_HEADER = "Onward-Delivery"
"""The delivery's id (workflow id and activity id): equal on every retry of one delivery."""
WEBHOOK_TIMEOUT_S = 10.0
"""One POST may take this long before the attempt counts as failed."""
_RETRYABLE_STATUS = frozenset({408, 429})


class WebhookActivities:
    """Delivers run results to webhooks; one HTTP client for the worker's life.

    Args:
        secret: the signing secret (``ONWARD_WEBHOOK_SECRET``); None: deliveries
            fail at once, naming the setting, and the run is not affected.
        transport: an httpx transport (tests); default: the network.
    """

    def __init__(
        self, secret: str | None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._secret = secret or None
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                transport=self._transport, timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False
            )
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client (a later delivery opens a new one)."""
        if self._http is not None:
            await self._http.aclose()

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
        body = json.dumps(
            {"id": delivery.run_id, "result": delivery.result.model_dump(mode="json")},
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret, int(time.time())),
            DELIVERY_HEADER: f"{info.workflow_id}/{info.activity_id}",
        }
        try:
            response = await self._client().post(delivery.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise _failure(f"webhook POST failed: {type(err).__name__}: {err}", True) from None
        status = response.status_code
        if 200 <= status < 300:
            return WebhookOutcome(status_code=status, attempt=info.attempt)
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        raise _failure(f"webhook receiver answered {status}", retryable)


def _failure(message: str, retryable: bool) -> ApplicationError:
    # Expected failures: one line in the history, no traceback in the worker's log.
    return ApplicationError(
        message,
        type="WebhookFailed",
        non_retryable=not retryable,
        category=ApplicationErrorCategory.BENIGN,
    )
