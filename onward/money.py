"""Costs for people: small figures keep their significant digits, unknown stays unknown.

Pure, shared by the workflow (the Web UI card) and every client (CLI, report).
"""

from __future__ import annotations

import math

__all__ = ["cost_text", "money"]


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
