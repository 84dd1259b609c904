"""Solver registry: a name (or a ``FlowSolver`` subclass) selects the integration method.

``SOLVERS`` maps names to classes:
  'gradflow' (default) adaptive DP5(4), polar/relative variables, ReLU pattern control;
  'gd'       gradient descent = forward Euler with step ``eta``;
  'rk4'      classical RK4 with fixed step ``dt``;
  'RK23', 'RK45', 'DOP853', 'Radau', 'BDF', 'LSODA': scipy.integrate wrappers.
The base-class contract is in ``gradflow.dynamics._base.FlowSolver``.
"""
from __future__ import annotations

from ._base import FlowSolver, StepFailure
from .adaptive import GradFlowSolver
from .fixed import GradientDescent, RK4Fixed
from .scipy_solvers import SCIPY_SOLVERS

SOLVERS: dict[str, type[FlowSolver]] = {
    "gradflow": GradFlowSolver,
    "gd": GradientDescent,
    "rk4": RK4Fixed,
    **SCIPY_SOLVERS,
}

__all__ = ["SOLVERS", "FlowSolver", "StepFailure", "get_solver", "register_solver"]


def get_solver(solver) -> type[FlowSolver]:
    """Resolve a registry name or a FlowSolver subclass; anything else raises ValueError."""
    if isinstance(solver, type) and issubclass(solver, FlowSolver):
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return SOLVERS[solver]
    raise ValueError(f"`solver` must be one of {sorted(SOLVERS)} or a FlowSolver subclass; "
                     f"got {solver!r}")


def register_solver(cls: type[FlowSolver]) -> type[FlowSolver]:
    """Add a FlowSolver subclass to SOLVERS under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, FlowSolver)) or not cls.name:
        raise ValueError("`cls` must be a FlowSolver subclass with a non-empty `name`")
    SOLVERS[cls.name] = cls
    return cls
