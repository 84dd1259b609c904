"""Regression tests for the reviewed theory defects (exact radius starts, alignment
rate with K2 > K1, input validation, sup_distance not mutating the model)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_theory_helpers import enumerate_radius_F1, slsqp_radius

from gradflow.config import DataConfig
from gradflow.data import make_centres, make_subclass_data
from gradflow.theory import (
    alignment_duration,
    alignment_rate,
    duration_ratio,
    from_data,
    ideal_Fp,
    potential_max,
    potential_maximiser,
    separability_mu,
)
from gradflow.theory.exact_radius import exact_radius


# -- defect 1: minima on pieces with some z_k < 0 -------------------------------------------
def test_exact_radius_finds_minimum_behind_own_hyperplane():
    # review r5: the old starts stopped at 0.960274 (z_3 > 0 piece), the minimum has z_3 < 0
    C = make_centres(DataConfig(K=5, K1=3, D=6, centres="correlated", cosine=0.3))
    x = np.array([0.470003, 0.355036, 0.464433, -0.440133, -0.882523, 0.005147])
    clf = ideal_Fp(C, [1, 1, 1, -1, -1], 1.5)
    r = exact_radius(x, clf)
    ref = slsqp_radius(x, clf, n_random=20)
    # both converged KKT points (~1e-12); 1e-5 is the brief's tolerance, far below the
    # 2.5 % gap of the old answer
    assert r.radius[0] == pytest.approx(0.937213, rel=1e-5)
    assert r.radius[0] == pytest.approx(ref, rel=1e-5)


def _hard(seed, p):
    d = make_subclass_data(DataConfig(K=6, K1=3, D=9, alpha=1.0, n=200, centres="correlated",
                                      cosine=0.3, seed=seed), split="test")
    return d, from_data(d, "Fp", p=p)


def test_exact_radius_hard_points_F1_and_F15():
    # points where the old code overestimated by 0.6-4 % (found by comparing it with the
    # exact enumeration / SLSQP): F_1 against all 2^6 linear pieces, F_1.5 against SLSQP
    d, clf = _hard(4, 1.0)
    idx = [3, 190, 195]
    r = exact_radius(d.X[idx], clf).radius
    for i, ri in zip(idx, r):
        # exact projections / KKT points on both sides: rounding; 1e-5 relative
        assert ri == pytest.approx(enumerate_radius_F1(d.X[i], clf), rel=1e-5)
    d, clf = _hard(3, 1.5)
    idx = [26, 141]
    r = exact_radius(d.X[idx], clf).radius
    for i, ri in zip(idx, r):
        assert ri == pytest.approx(slsqp_radius(d.X[i], clf, n_random=20), rel=1e-5)


@pytest.mark.xfail(strict=True, reason="known remaining miss: the masked-start search does not "
                   "reach every sign piece (no global certificate); see docs/theory.md s. 3")
def test_exact_radius_known_remaining_misses():
    d, clf = _hard(3, 1.5)
    for i in (150, 169):  # 6 % and 0.6 % too large with the current starts
        assert exact_radius(d.X[i], clf).radius[0] == pytest.approx(
            slsqp_radius(d.X[i], clf, n_random=20), rel=1e-5)


# -- defect 2: the alignment phase ends at the faster group's rate ---------------------------
def test_alignment_rate_and_ratio_label_swap_symmetric():
    for K1 in range(1, 10):
        for p in (1.0, 1.5, 3.0):
            # swapping the labels leaves the dynamics unchanged: exact same value
            assert alignment_rate(10, K1, p) == alignment_rate(10, 10 - K1, p)
        assert duration_ratio(K1, K=10) == duration_ratio(10 - K1, K=10)
        assert duration_ratio(K1, K=10) == pytest.approx(math.sqrt(max(K1, 10 - K1)), rel=1e-15)
    # K1 >= K2 (reference K1 = 6): unchanged from THEORY.md s. 4
    assert alignment_rate(10, 6, 1) == potential_max(10, 6, 1)
    assert alignment_rate(10, 2, 1) == pytest.approx(math.sqrt(8) / 10, rel=1e-15)
    with pytest.raises(ValueError, match="`K`"):
        duration_ratio(2)
    with pytest.raises(ValueError, match="`K1`"):
        duration_ratio(10, K=10)


def _t_end(K, K1, p, eps=1e-6, h=200, dt=0.05, seed=0):
    """Time for the exp-loss (alpha = 0 population, X = I_K) to drop by 10 % from a small
    balanced init, by gradient descent with step dt (the review's r8 at smaller size)."""
    torch.manual_seed(seed)
    X = torch.eye(K, dtype=torch.float64)
    y = torch.where(torch.arange(K) < K1, 1.0, -1.0).double()
    W = torch.randn(h, K, dtype=torch.float64)
    W = W / W.norm(dim=1, keepdim=True) * eps
    v = torch.where(torch.rand(h) < 0.5, 1.0, -1.0).double() * eps
    W.requires_grad_(True)
    v.requires_grad_(True)
    L0, t = None, 0.0
    while t < 1e4:
        f = (torch.relu(X @ W.T) ** p / W.norm(dim=1) ** (p - 1)) @ v
        L = torch.exp(-y * f).mean()
        L0 = L.item() if L0 is None else L0
        if L.item() <= 0.9 * L0:
            return t
        gW, gv = torch.autograd.grad(L, (W, v))
        with torch.no_grad():
            W -= dt * gW
            v -= dt * gv
        t += dt
    raise RuntimeError("no loss drop")


@pytest.mark.slow  # ~9 s of gradient descent
def test_alignment_duration_matches_flow_when_K2_exceeds_K1():
    K, K1, eps = 10, 2, 1e-6
    T = _t_end(K, K1, 1.0, eps=eps)
    pred = alignment_duration(eps, alignment_rate(K, K1, 1.0))
    old = alignment_duration(eps, potential_max(K, K1, 1.0))
    # the prediction is a leading-order log(1/eps)/rate: the alignment transient and the
    # O(1) output at the end shift T by O(1/rate) ~ 4 here, i.e. ~10 %; 25 % separates it
    # from the old prediction (2x too long)
    assert abs(T - pred) <= 0.25 * pred, (T, pred)
    assert abs(T - old) > 0.4 * old


# -- defect 3: validation ---------------------------------------------------------------------
def test_potential_maximiser_and_mu_validate_labels():
    C = np.eye(3, 4)
    with pytest.raises(ValueError, match="`labels`.*-1 and \\+1"):
        potential_maximiser(C, [1, 1, 1], 1.0)
    with pytest.raises(ValueError, match="`labels`"):
        potential_maximiser(C, [1, 0, -1], 1.0)
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="`y`.*both classes"):
        separability_mu(X, [1.0, 1.0])
    with pytest.raises(ValueError, match="`y`"):
        separability_mu(X, [1.0, 2.0])


# -- defect 4: sup_distance works on a copy -----------------------------------------------------
def test_sup_distance_does_not_cast_callers_module():
    from gradflow.theory import sup_distance

    d = make_subclass_data(DataConfig(K=4, K1=2, D=6, alpha=0.1, n=40, seed=0), split="test")
    clf = from_data(d, "F")
    net = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    w0 = net[0].weight.detach().clone()
    sup_distance(net, clf, d.X, n_rounds=1, n_starts=2, n_steps=5)
    assert net[0].weight.dtype == torch.float32
    assert torch.equal(net[0].weight.detach(), w0)
