"""The model activity: one activity for every provider."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.providers.base import ModelProvider
from onward.contracts import ModelRequest, ModelResponse, provider_of
from onward.errors import PROVIDER_NOT_CONFIGURED
from onward.pricing import PricingTable

__all__ = ["ModelActivities"]


class ModelActivities:
    """Calls the provider named by the request's model, and prices the answer.

    Providers and the pricing table are created once in ``worker.py``; API
    keys stay in the worker's environment and never reach workflow history.
    """

    def __init__(self, providers: Mapping[str, ModelProvider], pricing: PricingTable) -> None:
        self._providers = dict(providers)
        self._pricing = pricing

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
        async with heartbeating():
            response = await provider.complete(request)
        cost = self._pricing.cost(request.model, response.usage, override=request.pricing)
        return response.model_copy(update={"cost_usd": cost})
