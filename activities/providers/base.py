"""What every model provider implements."""

from __future__ import annotations

from typing import Protocol

from onward.contracts import ModelRequest, ModelResponse

__all__ = ["ModelProvider"]


class ModelProvider(Protocol):
    """Turns a provider-neutral request into a provider-neutral response.

    Providers do not retry and do not price: the model activity and Temporal's
    retry policy own both, so every provider behaves the same way on failure.
    """

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Make one model call."""
        ...
