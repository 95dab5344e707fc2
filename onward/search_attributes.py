"""Onward's custom search attributes, shared by the worker (which registers
them) and the workflow (which publishes them as it goes).

The embedded SQLite dev server has few custom slots per type (about 3 Int and
3 Double), so keep this list short.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

__all__ = [
    "ALL",
    "COST",
    "MODEL",
    "STATUS",
    "STEPS",
    "TENANT",
    "TOKENS",
    "at_start",
    "tenant_tag",
    "values_in",
]

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


def at_start(model: str, tenant: str | None, registered: Collection[str]) -> TypedSearchAttributes:
    """The values a run shows before its first step, of the attributes the server has.

    A client that starts a run with them saves the run's first upsert (an event and
    a visibility write): the run publishes only what differs from them.
    """
    values: dict[SearchAttributeKey[Any], Any] = {
        STATUS: "running",
        MODEL: model,
        STEPS: 0,
        TOKENS: 0,
        COST: 0.0,
    }
    if tenant:
        values[TENANT] = tenant
    return TypedSearchAttributes(
        [SearchAttributePair(key, value) for key, value in values.items() if key.name in registered]
    )


def values_in(attributes: TypedSearchAttributes) -> dict[str, Any]:
    """Onward's attributes among ``attributes``, by name."""
    found = {key.name: attributes.get(key) for key in ALL}
    return {name: value for name, value in found.items() if value is not None}
