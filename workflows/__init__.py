"""Deterministic workflow code only: no I/O, no clocks, no randomness but ``workflow.*``."""

from onward.workflows.agent import AgentWorkflow

__all__ = ["AgentWorkflow"]
