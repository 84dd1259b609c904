"""Wrappers of scipy.integrate's OdeSolver classes (RK23, RK45, DOP853, Radau, BDF, LSODA).

They integrate dtheta/dt = -grad L in Cartesian variables (W, v, b) with
scipy's mixed error control |e| <= atol + rtol |y| per component. Every call
of the right-hand side counts in ``nfev``: finite-difference Jacobian columns of the
implicit methods, the evaluation of the loss at an accepted state scipy did not evaluate
itself, and DOP853's dense output at save times (three calls per step that holds one).
Dense output is scipy's own.
Checkpoints are not supported (scipy's solver state is private).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.integrate

from .._validate import check_real
from ..model import TwoLayerParams
from ._base import FlowSolver, StepFailure
from .fields import CartesianRep, FlowProblem


class ScipySolver(FlowSolver):
    """scipy ``OdeSolver`` ``method`` on the Cartesian field; options rtol, atol, max_step, first_step."""

    method = "RK45"
    OPTIONS = {"rtol": 1e-3, "atol": 1e-6, "max_step": math.inf, "first_step": None}

    @classmethod
    def validate_options(cls, o: dict) -> dict:
        o["rtol"] = check_real("rtol", o["rtol"], 0.0, lo_open=True)
        o["atol"] = check_real("atol", o["atol"], 0.0)
        if o["max_step"] != math.inf:
            o["max_step"] = check_real("max_step", o["max_step"], 0.0, lo_open=True)
        if o["first_step"] is not None:
            o["first_step"] = check_real("first_step", o["first_step"], 0.0, lo_open=True)
        return o

    def __init__(self, problem: FlowProblem, params0: TwoLayerParams, t0: float,
                 t_bound: float, **options):
        super().__init__(problem, params0, t0, t_bound, **options)
        self.rep = CartesianRep(problem, params0)
        y0 = self.rep.pack(params0)
        # the last two right-hand-side calls: scipy's first call is at y0, its second (the
        # initial-step probe) elsewhere, and the loss at y0 is wanted after both
        self._recent: list[tuple] = []
        kw = {k: v for k, v in self.options.items() if v is not None}
        cls = getattr(scipy.integrate, self.method)
        self._ode = cls(self._fun, t0, y0, t_bound, **kw)
        self.loss, self.f = self._loss_at(self._ode.y)

    def _fun(self, t, y):
        dy, loss, f = self.rep.field(y)
        self.nfev += 1
        self._recent = [*self._recent[-1:], (y.copy(), loss, f)]
        return dy

    def _loss_at(self, y):
        """Loss and outputs at an accepted state: from scipy's own calls when one was at y
        (RK45 / DOP853: always), else one more field evaluation, counted (the implicit
        methods often accept a state they never evaluated)."""
        for y_seen, loss, f in reversed(self._recent):
            if np.array_equal(y_seen, y):
                return loss, f
        self.nfev += 1
        return self.rep.field(y)[1:]

    def step(self) -> None:
        msg = self._ode.step()
        if self._ode.status == "failed":
            raise StepFailure(f"scipy {self.method}: {msg}")
        self.t_old, self.t = float(self._ode.t_old), float(self._ode.t)
        self.n_steps += 1
        self.loss, self.f = self._loss_at(self._ode.y)

    def params(self) -> TwoLayerParams:
        return self.rep.unpack(self._ode.y)

    def dense(self, ts) -> list[TwoLayerParams]:
        sol = self._ode.dense_output()
        return [self.rep.unpack(sol(t)) for t in np.atleast_1d(ts)]


def _make(method: str) -> type[ScipySolver]:
    return type(f"Scipy{method}", (ScipySolver,), {
        "name": method, "method": method,
        "order": {"RK23": 3, "RK45": 5, "DOP853": 8}.get(method),
        # scipy's DOP853 interpolant needs three extra field evaluations per call
        "dense_costs_evaluations": method == "DOP853",
        "__doc__": f"scipy.integrate.{method} on the Cartesian gradient-flow field.",
    })


SCIPY_SOLVERS = {m: _make(m) for m in ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")}
