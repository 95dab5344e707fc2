"""The model activity: one activity for every provider.

Providers map every failure to a typed ``ApplicationError`` (see
:mod:`onward.activities.providers.errors`) and Temporal retries the retryable ones.
How many attempts a call gets is decided in one place, the worker's
``ONWARD_MODEL_MAX_ATTEMPTS``: runs learn it from ``describe_worker`` and put it
in the model activity's retry policy. This activity only reads that policy to
end clearly: on the last attempt a retryable error is raised again as
non-retryable, ``gave up after N attempts: <last error>``, keeping its type,
so the run ends with the cause instead of a generic "retries exhausted".

An expected, retried provider error is one log line per attempt, not a
traceback: it is raised as a benign error (which the SDK logs at DEBUG) and
logged here once.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward.activities.heartbeat import heartbeating
from onward.activities.providers.base import ModelProvider
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
        telemetry: GenAI spans of model calls.
    """

    def __init__(
        self,
        providers: Mapping[str, ModelProvider],
        pricing: PricingTable,
        *,
        telemetry: ActivityTelemetry | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._pricing = pricing
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
            # A provider's typed error is expected: one log line, no traceback.
            if not err.non_retryable and self._last_attempt():
                raise self._give_up(err.message, err.type) from None
            self._log_failure(err)
            raise _benign(err) from None
        except Exception as err:
            # An unexpected failure (a bug, say) is retried like any other, with its
            # traceback logged by the SDK, but it too must end clearly once the
            # attempts are used up.
            if not self._last_attempt():
                raise
            raise self._give_up(f"{type(err).__name__}: {err}", type(err).__name__) from None
        return response

    def _attempt_limit(self) -> int | None:
        """The run's ``maximum_attempts`` (from the worker's setting); None: unlimited."""
        policy = activity.info().retry_policy
        if policy is None or policy.maximum_attempts <= 0:
            return None
        return policy.maximum_attempts

    def _last_attempt(self) -> bool:
        limit = self._attempt_limit()
        return limit is not None and activity.info().attempt >= limit

    def _log_failure(self, err: ApplicationError) -> None:
        limit = self._attempt_limit()
        of = f" of {limit}" if limit is not None else ""
        then = "not retried" if err.non_retryable else "retrying"
        activity.logger.warning(
            "model call attempt %d%s failed, %s: %s", activity.info().attempt, of, then, err.message
        )

    def _give_up(self, message: str, error_type: str | None) -> ApplicationError:
        attempts = activity.info().attempt
        activity.logger.warning("model call gave up after %d attempts: %s", attempts, message)
        return ApplicationError(
            f"gave up after {attempts} attempts: {message}",
            type=error_type,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )


def _benign(err: ApplicationError) -> ApplicationError:
    """``err`` marked as expected, so the SDK logs no traceback for it (we log one line)."""
    if err.category == ApplicationErrorCategory.BENIGN:
        return err
    return ApplicationError(
        err.message,
        *err.details,
        type=err.type,
        non_retryable=err.non_retryable,
        next_retry_delay=err.next_retry_delay,
        category=ApplicationErrorCategory.BENIGN,
    )
