"""Model prices and the cost of a model call.

The table ships as ``pricing.json`` beside this module; a user's file (set
``ONWARD_PRICING`` for the worker) is merged over it. An entry may also give the
model's ``context_window`` (tokens), which runs without their own ``context``
limit compact against. Cost is computed in the
model activity, where the worker's table is, and recorded in history, so a
later price change never alters a recorded run.
"""

from __future__ import annotations

import json
from pathlib import Path

from onward.contracts import ModelPrice, Usage

__all__ = ["DEFAULT_PRICING_FILE", "PricingTable"]

DEFAULT_PRICING_FILE = Path(__file__).with_name("pricing.json")


class PricingTable:
    """Prices by ``provider:model``, with ``provider:*`` wildcards."""

    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    @classmethod
    def load(cls, *paths: Path) -> PricingTable:
        """Read the default table, then each file in ``paths`` over it."""
        prices: dict[str, ModelPrice] = {}
        for path in (DEFAULT_PRICING_FILE, *paths):
            raw = json.loads(path.read_text(encoding="utf-8"))
            for model, price in raw.items():
                if not model.startswith("_"):
                    prices[model] = ModelPrice.model_validate(price)
        return cls(prices)

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or None when the table does not know it."""
        if model in self._prices:
            return self._prices[model]
        provider = model.split(":", 1)[0]
        return self._prices.get(f"{provider}:*")

    def context_window(self, model: str) -> int | None:
        """Tokens ``model`` accepts at once, when its table entry says; else None."""
        price = self.price_for(model)
        return None if price is None else price.context_window

    def cost(self, model: str, usage: Usage, override: ModelPrice | None = None) -> float | None:
        """Cost in USD of ``usage`` on ``model``; None when its price is unknown."""
        price = override or self.price_for(model)
        if price is None:
            return None
        return (
            usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
        ) / 1_000_000
