"""Fixed-step explicit Runge-Kutta methods: "gd" (forward Euler = gradient descent) and "rk4".

Gradient descent with learning rate eta is exactly forward Euler with step eta
on dtheta/dt = -grad L: theta_{k+1} = theta_k - eta grad L(theta_k). These are
the baselines; they evaluate the exact (not pattern-frozen) field.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_choice, check_real
from ..model import TwoLayerParams
from ._base import FlowSolver, end_slack, hermite
from .fields import CartesianRep, FlowProblem, PolarRep
from .tableaus import EULER, RK4, Tableau


class FixedStepRK(FlowSolver):
    """Explicit RK with a constant step (the last step is shortened to land on t_bound)."""

    tableau: Tableau = RK4
    step_option = "dt"
    supports_checkpoint = True

    def __init__(self, problem: FlowProblem, params0: TwoLayerParams, t0: float,
                 t_bound: float, **options):
        super().__init__(problem, params0, t0, t_bound, **options)
        self.dt = self.options[self.step_option]
        rep_cls = PolarRep if self.options["variables"] == "polar" else CartesianRep
        self.rep = rep_cls(problem, params0)
        self.y = self.rep.pack(params0)
        self.k, self.loss, self.f = self.rep.field(self.y)
        self.nfev = 1
        self.y_old, self.k_old = self.y, self.k

    @classmethod
    def validate_options(cls, o: dict) -> dict:
        o[cls.step_option] = check_real(cls.step_option, o[cls.step_option], 0.0, lo_open=True)
        check_choice("variables", o["variables"], ("cartesian", "polar"))
        return o

    def step(self) -> None:
        h = min(self.dt, self.t_bound - self.t)
        if self.t_bound - (self.t + h) <= end_slack(self.t_bound):
            h = self.t_bound - self.t  # ten steps of 0.1 end at t = 1, not one ulp before
        tab = self.tableau
        K = [self.k]
        for i in range(1, tab.stages):
            yi = self.y + h * sum(tab.A[i, m] * K[m] for m in range(i) if tab.A[i, m] != 0.0)
            K.append(self.rep.field(yi)[0])
            self.nfev += 1
        y_new = self.rep.finalize(self.y + h * sum(b * k for b, k in zip(tab.b, K) if b != 0.0))
        k_new, loss, f = self.rep.field(y_new)
        self.nfev += 1
        self.y_old, self.k_old, self.t_old = self.y, self.k, self.t
        self.y, self.k, self.loss, self.f = y_new, k_new, loss, f
        # t advances by repeated addition; exact multiples are not needed, t_bound is hit exactly.
        self.t = self.t_bound if self.t + h >= self.t_bound else self.t + h
        self.n_steps += 1

    def params(self) -> TwoLayerParams:
        return self.rep.unpack(self.y)

    def dense(self, ts) -> list[TwoLayerParams]:
        if self.tableau.order == 1:  # linear interpolation for Euler (first order anyway)
            h = self.t - self.t_old
            ys = [self.y_old + ((t - self.t_old) / h if h else 0.0) * (self.y - self.y_old)
                  for t in np.atleast_1d(ts)]
        else:
            ys = hermite(ts, self.t_old, self.t, self.y_old, self.y, self.k_old, self.k)
        return [self.rep.unpack(y) for y in ys]

    def state_dict(self) -> dict:
        return {**self._counters(), "y": self.y, "k": self.k, "f": self.f,
                "y_old": self.y_old, "k_old": self.k_old}

    def load_state_dict(self, s: dict) -> None:
        self._load_counters(s)
        self.y, self.k, self.f = s["y"].copy(), s["k"].copy(), s["f"].copy()
        self.y_old, self.k_old = s["y_old"].copy(), s["k_old"].copy()


class GradientDescent(FixedStepRK):
    """Forward Euler with step ``eta``: plain full-batch gradient descent (order 1)."""

    name = "gd"
    order = 1
    tableau = EULER
    step_option = "eta"
    OPTIONS = {"eta": 0.1, "variables": "cartesian"}


class RK4Fixed(FixedStepRK):
    """Classical 4th-order Runge-Kutta with constant step ``dt`` (the p=1 reference method)."""

    name = "rk4"
    order = 4
    tableau = RK4
    step_option = "dt"
    OPTIONS = {"dt": 0.01, "variables": "cartesian"}
