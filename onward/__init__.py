"""Onward: durable AI agents on Temporal.

The public protocol lives in :mod:`onward.contracts`; pure run bookkeeping
(budgets, pricing, the conversation) lives beside it so that workflows,
activities and clients share one definition of each.
"""

from onward.contracts import AGENT_WORKFLOW, DEFAULT_TASK_QUEUE, AgentInput, AgentResult, Budget

__all__ = ["AGENT_WORKFLOW", "DEFAULT_TASK_QUEUE", "AgentInput", "AgentResult", "Budget"]
