"""Deterministic workflow code only: no I/O, no clocks, no randomness but ``workflow.*``."""

from workflows.agent import AgentWorkflow

__all__ = ["AgentWorkflow"]
