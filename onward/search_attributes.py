"""Onward's custom search attributes, shared by the worker (which registers
them) and the workflow (which upserts them after every step).

The embedded SQLite dev server has few custom slots per type (about 3 Int and
3 Double), so keep this list short.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = ["ALL", "COST", "MODEL", "STATUS", "STEPS", "TENANT", "TOKENS"]

STATUS = SearchAttributeKey.for_keyword("OnwardStatus")
MODEL = SearchAttributeKey.for_keyword("OnwardModel")
TENANT = SearchAttributeKey.for_keyword("OnwardTenant")
STEPS = SearchAttributeKey.for_int("OnwardSteps")
TOKENS = SearchAttributeKey.for_int("OnwardTokens")
COST = SearchAttributeKey.for_float("OnwardCostUsd")

ALL = (STATUS, MODEL, TENANT, STEPS, TOKENS, COST)
