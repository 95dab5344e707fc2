"""The model activity: one activity for every provider.

Providers map every failure to a typed ``ApplicationError`` (see
:mod:`onward.activities.providers.errors`) and Temporal retries the retryable ones.
This activity bounds those retries itself, from the worker's
``ONWARD_MODEL_MAX_ATTEMPTS``: on the last allowed attempt a retryable error
is raised again as non-retryable, ``gave up after N attempts: <last error>``,
keeping its type, so the run ends with the cause instead of a generic
"retries exhausted".
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity
from temporalio.exceptions import ApplicationError

from onward.activities.heartbeat import heartbeating
from onward.activities.providers.base import ModelProvider
from onward.activities.providers.settings import DEFAULT_MAX_ATTEMPTS
from onward.activities.telemetry import ActivityTelemetry
from onward.contracts import ModelRequest, ModelResponse, provider_of
from onward.errors import PROVIDER_NOT_CONFIGURED
from onward.pricing import PricingTable

__all__ = ["ModelActivities"]


class ModelActivities:
    """Calls the provider named by the request's model, and prices the answer.

    Providers and the pricing table are created once in ``worker.py``; API
    keys stay in the worker's environment and never reach workflow history.

    Args:
        providers: by provider name (the part before ``:`` of a model).
        pricing: prices applied to each answer's usage.
        max_attempts: attempts of one model call before giving up; the
            workflow's retry policy, when lower, wins.
    """

    def __init__(
        self,
        providers: Mapping[str, ModelProvider],
        pricing: PricingTable,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        telemetry: ActivityTelemetry | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._pricing = pricing
        self._max_attempts = max_attempts
        self._telemetry = telemetry or ActivityTelemetry()

    @property
    def provider_names(self) -> list[str]:
        """The providers this worker has, for run input checks."""
        return sorted(self._providers)

    @activity.defn(name="call_model")
    async def call_model(self, request: ModelRequest) -> ModelResponse:
        """Make one model call; heartbeats so a dead worker or a cancel is noticed at once."""
        provider_name = provider_of(request.model)
        provider = self._providers.get(provider_name)
        if provider is None:
            configured = ", ".join(sorted(self._providers)) or "none"
            raise ApplicationError(
                f"model provider {provider_name!r} is not configured on this worker "
                f"(configured: {configured})",
                type=PROVIDER_NOT_CONFIGURED,
                non_retryable=True,
            )
        try:
            with self._telemetry.chat(request) as chat:
                async with heartbeating():
                    response = await provider.complete(request)
                cost = self._pricing.cost(request.model, response.usage, override=request.pricing)
                response = response.model_copy(update={"cost_usd": cost})
                chat.record(response)
        except ApplicationError as err:
            if err.non_retryable or not self._last_attempt():
                raise
            raise self._give_up(err.message, err.type) from None
        except Exception as err:
            # An unexpected failure (a bug, say) is retried like any other,
            # but it too must end clearly once the attempts are used up.
            if not self._last_attempt():
                raise
            raise self._give_up(f"{type(err).__name__}: {err}", type(err).__name__) from None
        return response

    def _attempt_limit(self) -> int:
        limit = self._max_attempts
        policy = activity.info().retry_policy
        if policy is not None and policy.maximum_attempts > 0:
            limit = min(limit, policy.maximum_attempts)
        return limit

    def _last_attempt(self) -> bool:
        return activity.info().attempt >= self._attempt_limit()

    def _give_up(self, message: str, error_type: str | None) -> ApplicationError:
        attempts = activity.info().attempt
        return ApplicationError(
            f"gave up after {attempts} attempts: {message}",
            type=error_type,
            non_retryable=True,
        )
