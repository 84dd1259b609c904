"""Robust accuracy against the l2 radius: from per-sample radii, or by fixed-radius PGD.

From radii (the fast path): one ``attack_radius`` call gives every eps at once,

    acc(eps) = (1/n) sum_i 1[rho_i > eps],

with rho_i = 0 for misclassified points (an attack at budget eps succeeds iff
the minimal adversarial distance is <= eps). With the verified upper bounds it
is an empirical robust accuracy (an upper bound on the true one); with the
certified lower bounds it is a certified accuracy (a lower bound).

By PGD (the reference protocol): an independent attack at each eps of the grid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .._validate import check_array, check_choice
from .base import Attack, check_eps, check_inputs
from .pgd import reference_pgd
from .radius import attack_radius

CURVE_METHODS = ("radius", "pgd")


def _grid(eps) -> np.ndarray:
    e = check_array("eps", np.atleast_1d(np.asarray(eps, dtype=float)), ndim=1)
    if e.size == 0 or np.any(e < 0):
        raise ValueError("`eps` must be a non-empty list of radii >= 0")
    return e


def accuracy_from_radii(radii, eps) -> np.ndarray:
    """acc(eps) = mean_i 1[radii_i > eps] for each eps of the grid."""
    r = radii.detach().cpu().numpy() if isinstance(radii, torch.Tensor) else np.asarray(radii)
    r = check_array("radii", r, ndim=1, finite=False)
    e = _grid(eps)
    return (r[None, :] > e[:, None]).mean(axis=1)


@dataclass
class RobustCurve:
    """Robust accuracy at each radius, with its cost.

    eps, accuracy: the curve; certified: certified accuracy (radius method with a
    lower bound, else None); n_grad, n_forward: mean evaluations per sample for the
    whole curve; seconds: wall time; method: 'radius' or 'pgd'.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    certified: np.ndarray | None
    n_grad: float
    n_forward: float
    seconds: float
    method: str


def robust_accuracy_curve(model, x: torch.Tensor, y, eps, *, method: str = "radius",
                          attack: Attack | None = None, seed: int = 0) -> RobustCurve:
    """The l2 robust-accuracy curve at the radii ``eps``.

    method='radius': one ``attack_radius`` call (``attack`` a minimum-norm attack,
    default ``MinNormL2``); method='pgd': a fixed-budget attack at each radius
    (``attack`` default ``reference_pgd()``, the reference protocol).
    """
    check_choice("method", method, CURVE_METHODS)
    e = _grid(eps)
    x, y = check_inputs(x, y)
    t0 = time.perf_counter()
    if method == "radius":
        res = attack_radius(model, x, y, attacks=None if attack is None else [attack], seed=seed)
        acc = accuracy_from_radii(res.upper, e)
        cert = accuracy_from_radii(res.lower, e) if res.lower_method != "none" else None
        return RobustCurve(e, acc, cert, float(res.n_grad.double().mean()),
                           float(res.n_forward.double().mean()), time.perf_counter() - t0,
                           "radius")
    attack = reference_pgd(seed=seed) if attack is None else attack
    if attack.minimum_norm:
        raise ValueError("`attack` must be a fixed-budget attack for method='pgd'")
    acc, ng, nf = [], 0.0, 0.0
    for ei in e:
        res = attack(model, x, y, check_eps(float(ei), x.shape[0], x))
        acc.append(res.robust_accuracy())
        ng += float(res.n_grad.double().mean())
        nf += float(res.n_forward.double().mean())
    return RobustCurve(e, np.array(acc), None, ng, nf, time.perf_counter() - t0, "pgd")
