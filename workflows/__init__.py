"""Deterministic workflow code only: no I/O, no clocks, no randomness but ``workflow.*``."""

from onward.workflows.agent import AgentWorkflow
from onward.workflows.input_check import InputCheckWorkflow
from onward.workflows.session import SessionWorkflow

__all__ = ["AgentWorkflow", "InputCheckWorkflow", "SessionWorkflow"]
