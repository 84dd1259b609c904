"""Gradient-flow engine: ``simulate`` integrates dtheta/dt = -grad L for two-layer networks.

Public names: ``simulate``, ``Solution``, ``Stop``, ``SOLVERS`` (registry),
``FlowSolver`` (base class with its contract), ``register_solver``, and the
reduced alignment dynamics in ``gradflow.dynamics.reduced``.
"""
from __future__ import annotations

from ._base import FlowSolver, StepFailure
from .events import Stop
from .fields import FlowProblem, NonFiniteError
from .reduced import (
    ExtremalResult,
    Potential,
    find_extremal_vectors,
    predicted_alignment_time,
    reduced_flow,
)
from .simulate import simulate
from .solution import Solution
from .solvers import SOLVERS, get_solver, register_solver

__all__ = ["simulate", "Solution", "Stop", "SOLVERS", "FlowSolver", "FlowProblem",
           "NonFiniteError", "StepFailure", "get_solver", "register_solver", "Potential",
           "ExtremalResult", "find_extremal_vectors", "predicted_alignment_time", "reduced_flow"]
