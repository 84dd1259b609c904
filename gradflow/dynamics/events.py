"""Stopping rules and the end of the alignment phase.

Alignment-phase end (docs/dynamics.md): the first time the network output on
the training set reaches ``alignment_fraction`` (default 0.1) of the margin
scale 1, i.e. max_i |f(x_i)| = 0.1. Before it the loss weights -l'(y f) are
within ~10% of -l'(0) and the directional dynamics is the reduced flow of
THEORY.md section 4; for balanced neurons at rate G* it happens near
t = log(1/eps)/G* + log(0.1/G*)/(2 G*). ``crossing_time`` interpolates log max|f|
linearly between step ends (f grows like e^(2 G t) there); ``simulate`` refines that
guess by regula falsi on the solver's dense output (forward passes only, no gradient
evaluations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_int, check_real, store


@dataclass(frozen=True)
class Stop:
    """When to stop a run: at t_max, or earlier at a loss target, a norm cap or a step count.

    loss_target: stop at the first step end with mean loss <= loss_target.
    norm_cap:    stop at the first step end with max_j ||(w_j, v_j)|| >= norm_cap.
    max_steps:   stop after this many accepted steps (status 'max_steps').
    alignment_fraction: threshold of max_i |f(x_i)| defining the alignment-phase end.
    """

    t_max: float = 100.0
    loss_target: float | None = None
    norm_cap: float | None = None
    max_steps: int | None = None
    alignment_fraction: float = 0.1

    def __post_init__(self):
        store(self, "t_max", check_real("t_max", self.t_max, 0.0, lo_open=True))
        if self.loss_target is not None:
            store(self, "loss_target",
                  check_real("loss_target", self.loss_target, 0.0, lo_open=True))
        if self.norm_cap is not None:
            store(self, "norm_cap", check_real("norm_cap", self.norm_cap, 0.0, lo_open=True))
        if self.max_steps is not None:
            store(self, "max_steps", check_int("max_steps", self.max_steps, 1))
        store(self, "alignment_fraction",
              check_real("alignment_fraction", self.alignment_fraction, 0.0, lo_open=True))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def crossing_time(t0: float, a0: float, t1: float, a1: float, level: float) -> float:
    """Time where a(t) = level, interpolating log a linearly between (t0, a0) and (t1, a1)."""
    if a0 >= level or a0 <= 0 or a1 <= a0:
        return t1 if a0 < level else t0
    s = (math.log(level) - math.log(a0)) / (math.log(a1) - math.log(a0))
    return t0 + float(np.clip(s, 0.0, 1.0)) * (t1 - t0)


def default_save_times(t0: float, t_max: float, n: int = 100) -> np.ndarray:
    """t0 followed by n-1 log-spaced times from (t_max - t0) 1e-3 to t_max."""
    n = check_int("save_at", n, 2)
    span = t_max - t0
    return np.concatenate([[t0], t0 + np.geomspace(span * 1e-3, span, n - 1)])
