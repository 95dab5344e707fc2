"""Costs for people: small figures keep their significant digits, unknown stays unknown.

Pure, shared by the workflow (the Web UI card) and every client (CLI, report).
"""

from __future__ import annotations

import math

from onward.contracts import RunUsage

__all__ = ["cache_saved_text", "cache_summary", "cost_text", "money"]


def money(usd: float | None) -> str:
    """``$1.2500``, ``$0.000140``, ``$0.0000180`` (small costs keep 3 significant digits),
    ``$0``, or ``cost unknown``."""
    if usd is None:
        return "cost unknown"
    if usd >= 0.01:
        return f"${usd:.4f}"
    if usd <= 0:
        return "$0"
    return f"${usd:.{max(6, 2 - math.floor(math.log10(usd)))}f}"


def cost_text(usd: float, known: bool) -> str:
    """A total cost: unknown when no call was priced, a lower bound when some were not."""
    if known:
        return money(usd)
    if usd <= 0:
        return "cost unknown (unpriced model)"
    return f"at least {money(usd)} (some calls unpriced)"


def cache_summary(usage: RunUsage) -> str | None:
    """``1800 input tokens cached, 0 written · saved $0.0012``; None when nothing was cached."""
    if not (usage.cached_input_tokens or usage.cache_write_tokens):
        return None
    return (
        f"{usage.cached_input_tokens} input tokens cached, {usage.cache_write_tokens} written"
        f" · saved {cache_saved_text(usage.cache_saved_usd)}"
    )


def cache_saved_text(saved: float) -> str:
    """What the prompt cache saved: ``$0.0012``, or ``-$0.000400 (cache writes cost more)``."""
    return money(saved) if saved >= 0 else f"-{money(-saved)} (cache writes cost more)"
