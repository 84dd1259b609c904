"""The solver base class and its contract (modelled on scipy's ``OdeSolver``).

Contract for a subclass (``simulate`` relies on every rule):

1. Class attributes: ``name`` (registry key), ``OPTIONS`` (dict of option name ->
   default), ``order`` (nominal order, or None), ``supports_checkpoint``,
   ``dense_costs_evaluations`` (True when ``dense`` evaluates the field).
2. ``__init__(problem, params0, t0, t_bound, **options)``: unknown option names
   or bad values raise ValueError naming the option. The constructor evaluates
   the field at the initial state and sets ``loss`` and ``f`` (network output
   on the training set) there; it may count that evaluation in ``nfev``.
3. ``step()`` performs one accepted step: t_old <- t, t <- t + h with
   t <= t_bound, and refreshes ``loss`` and ``f`` at the new t. It counts every
   evaluation of the field in ``nfev`` (one evaluation = one loss gradient:
   two GEMMs), accepted steps in ``n_steps`` and rejected ones in
   ``n_rejected``. It never steps past ``t_bound``.
4. ``step()`` raises ``NonFiniteError`` (kind 'nan' or 'overflow') when the field
   is not finite, leaving the solver at its last good state; it raises
   ``StepFailure`` when it cannot continue (e.g. step size underflow).
5. ``params()`` returns the TwoLayerParams at ``t`` (fresh arrays).
6. ``dense(ts)`` returns TwoLayerParams at times ts inside [t_old, t], from the
   last step only; its accuracy is documented per method.
7. ``state_dict()`` returns a flat dict of numpy arrays / Python scalars that,
   passed to ``load_state_dict`` of a solver built with the same arguments,
   continues bit-identically (only when ``supports_checkpoint``).
8. A solver never mutates ``problem`` or ``params0``.
9. The gradient convention: dtheta/dt = -grad L(theta), with L the mean loss.
"""
from __future__ import annotations

import numpy as np

from ..model import TwoLayerParams
from .fields import FlowProblem


class StepFailure(RuntimeError):
    """The solver cannot take another step (message says why)."""


class FlowSolver:
    name: str = ""
    OPTIONS: dict = {}
    order: int | None = None
    supports_checkpoint: bool = False
    dense_costs_evaluations: bool = False

    def __init__(self, problem: FlowProblem, params0: TwoLayerParams, t0: float,
                 t_bound: float, **options):
        self.options = self.check_options(options)
        self.problem = problem
        self.t0 = float(t0)
        self.t = float(t0)
        self.t_old = float(t0)
        self.t_bound = float(t_bound)
        self.nfev = 0
        self.n_steps = 0
        self.n_rejected = 0
        self.loss = float("nan")
        self.f = None

    @classmethod
    def check_options(cls, options: dict) -> dict:
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for solver {cls.name!r}; "
                f"allowed options: {sorted(cls.OPTIONS)}")
        merged = dict(cls.OPTIONS)
        merged.update(options)
        return cls.validate_options(merged)

    @classmethod
    def validate_options(cls, options: dict) -> dict:
        return options

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> TwoLayerParams:  # pragma: no cover - abstract
        raise NotImplementedError

    def dense(self, ts) -> list[TwoLayerParams]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError(f"solver {self.name!r} does not support checkpoints")

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError(f"solver {self.name!r} does not support checkpoints")

    def _counters(self) -> dict:
        return {"t": self.t, "t_old": self.t_old, "nfev": self.nfev, "n_steps": self.n_steps,
                "n_rejected": self.n_rejected, "loss": self.loss}

    def _load_counters(self, s: dict) -> None:
        self.t, self.t_old = float(s["t"]), float(s["t_old"])
        self.nfev, self.n_steps = int(s["nfev"]), int(s["n_steps"])
        self.n_rejected, self.loss = int(s["n_rejected"]), float(s["loss"])


def end_slack(t_bound: float) -> float:
    """A few ulps of t_bound: a step ending closer than this to t_bound is stretched to it,
    so that no rounding remainder (e.g. of ten steps of 0.1 to t = 1) is left as a step."""
    return 64 * float(np.spacing(max(abs(t_bound), 1.0)))


def hermite(ts, t0, t1, y0, y1, k0, k1) -> list[np.ndarray]:
    """Cubic Hermite interpolant through (t0, y0, y0'=k0) and (t1, y1, y1'=k1); O(h^4) error."""
    h = t1 - t0
    out = []
    for t in np.atleast_1d(ts):
        s = 0.0 if h == 0 else (t - t0) / h
        h00 = (1 + 2 * s) * (1 - s) ** 2
        h10 = s * (1 - s) ** 2
        h01 = s * s * (3 - 2 * s)
        h11 = s * s * (s - 1)
        out.append(h00 * y0 + h10 * h * k0 + h01 * y1 + h11 * h * k1)
    return out
