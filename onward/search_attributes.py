"""Onward's custom search attributes, shared by the worker (which registers
them) and the workflow (which upserts them after every step).

The embedded SQLite dev server has few custom slots per type (about 3 Int and
3 Double), so keep this list short.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

__all__ = ["ALL", "COST", "MODEL", "STATUS", "STEPS", "TENANT", "TOKENS", "tenant_tag"]

STATUS = SearchAttributeKey.for_keyword("OnwardStatus")
MODEL = SearchAttributeKey.for_keyword("OnwardModel")
TENANT = SearchAttributeKey.for_keyword("OnwardTenant")
STEPS = SearchAttributeKey.for_int("OnwardSteps")
TOKENS = SearchAttributeKey.for_int("OnwardTokens")
COST = SearchAttributeKey.for_float("OnwardCostUsd")

ALL = (STATUS, MODEL, TENANT, STEPS, TOKENS, COST)


def tenant_tag(tenant: str | None) -> TypedSearchAttributes | None:
    """The ``OnwardTenant`` attribute a client sets on a run or session it starts."""
    if tenant is None:
        return None
    return TypedSearchAttributes([SearchAttributePair(TENANT, tenant)])
