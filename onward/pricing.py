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
from onward.errors import InvalidInput, SettingsError, validated

__all__ = ["DEFAULT_PRICING_FILE", "PricingTable", "billed_usd", "cache_saved_usd"]

DEFAULT_PRICING_FILE = Path(__file__).with_name("pricing.json")


class PricingTable:
    """Prices by ``provider:model``, with ``provider:*`` wildcards."""

    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    @classmethod
    def load(cls, *paths: Path) -> PricingTable:
        """Read the default table, then each file in ``paths`` over it.

        Raises:
            SettingsError: a file in ``paths`` cannot be read, is not JSON, or
                has an entry that is not a price.
        """
        prices: dict[str, ModelPrice] = {}
        for path in (DEFAULT_PRICING_FILE, *paths):
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object of model names to prices")
                for model, price in raw.items():
                    if not model.startswith("_"):
                        prices[model] = validated(ModelPrice, price, repr(model))
            except (OSError, ValueError, InvalidInput) as err:
                reason = err.strerror if isinstance(err, OSError) else str(err).splitlines()[0]
                raise SettingsError(f"pricing file {path} (ONWARD_PRICING): {reason}") from err
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
        """Cost in USD of ``usage`` on ``model``; None when its price is unknown.

        Cached input is billed at the price's cached rate and cache writes at
        its cache-write rate (each the input rate when the price gives none).
        """
        price = override or self.price_for(model)
        return None if price is None else billed_usd(price, usage)

    def cache_saved(
        self, model: str, usage: Usage, override: ModelPrice | None = None
    ) -> float | None:
        """What the prompt cache saved on ``usage``; None when unknown or nothing was cached."""
        price = override or self.price_for(model)
        if price is None or not (usage.cached_input_tokens or usage.cache_write_tokens):
            return None
        return cache_saved_usd(price, usage)


def billed_usd(price: ModelPrice, usage: Usage) -> float:
    """What ``usage`` costs at ``price``, cached and cache-written input at their own rates."""
    cached = usage.cached_input_tokens or 0
    written = usage.cache_write_tokens or 0
    plain = max(usage.input_tokens - cached - written, 0)
    cached_rate = (
        price.input_per_mtok
        if price.cached_input_per_mtok is None
        else (price.cached_input_per_mtok)
    )
    write_rate = (
        price.input_per_mtok if price.cache_write_per_mtok is None else (price.cache_write_per_mtok)
    )
    return (
        plain * price.input_per_mtok
        + cached * cached_rate
        + written * write_rate
        + usage.output_tokens * price.output_per_mtok
    ) / 1_000_000


def cache_saved_usd(price: ModelPrice, usage: Usage) -> float:
    """Every input token at the full rate minus :func:`billed_usd` (negative: writes cost more)."""
    full = (
        usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
    ) / 1_000_000
    return full - billed_usd(price, usage)
