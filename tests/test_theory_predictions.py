"""Alignment-phase predictions against numerical maximisation of the potential."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradflow.config import DataConfig
from gradflow.data import make_subclass_data
from gradflow.theory.potential import (
    population_potential,
    population_potential_grad,
    riemannian_grad,
)
from gradflow.theory.predictions import (
    alignment_duration,
    alignment_time_bound,
    duration_ratio,
    potential_max,
    potential_maximiser,
    potential_min,
    separability_mu,
)


def _numeric_max(C, y, p, sign=1.0, n=400, steps=400, seed=0):
    """Riemannian gradient ascent of sign*G on the sphere from n random starts."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n, C.shape[1]))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    for _ in range(steps):
        R = riemannian_grad(U, sign * population_potential_grad(U, C, y, p))
        U = U + 0.5 * R
        U /= np.linalg.norm(U, axis=1, keepdims=True)
    return float(np.max(sign * population_potential(U, C, y, p)))


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 4.0])
def test_extremal_values(p):
    K, K1 = 10, 6
    C = np.eye(K, K + 2)
    y = np.where(np.arange(K) < K1, 1.0, -1.0)
    # ascent converges to the maximiser; 1e-6 covers the residual for p near 2 (flat G)
    assert _numeric_max(C, y, p) == pytest.approx(potential_max(K, K1, p), abs=1e-6)
    assert -_numeric_max(C, y, p, sign=-1.0) == pytest.approx(potential_min(K, K1, p), abs=1e-6)
    u = potential_maximiser(C, y, p)
    assert population_potential(u, C, y, p) == pytest.approx(potential_max(K, K1, p), rel=1e-14)


def test_closed_forms_and_durations():
    assert potential_max(10, 6, 1) == pytest.approx(math.sqrt(6) / 10)
    assert potential_max(10, 6, 3) == pytest.approx(0.1)
    eps = 1e-6
    t1 = alignment_duration(eps, potential_max(10, 6, 1))
    t3 = alignment_duration(eps, potential_max(10, 6, 3))
    assert t1 == pytest.approx(math.log(1e6) * 10 / math.sqrt(6))
    assert t3 / t1 == pytest.approx(math.sqrt(6)) == pytest.approx(duration_ratio(6, K=10))


def test_separability_mu_bruteforce():
    d = make_subclass_data(DataConfig(K=4, K1=2, D=6, alpha=0.3, n=60, centres="correlated",
                                      cosine=0.6))
    Z = d.y[:, None] * d.X
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    want = min(float(Z[i] @ Z[j]) for i in range(60) for j in range(60))
    assert separability_mu(d.X, d.y, chunk=7) == pytest.approx(want, abs=1e-14)
    # a well-separated set: all y_i x_i in a cone around e_1
    X = np.array([[1.0, 0.1], [1.0, -0.2], [-1.0, 0.05]])
    y = np.array([1.0, 1.0, -1.0])
    mu = separability_mu(X, y)
    assert mu > 0
    assert alignment_time_bound(X, y) == pytest.approx(math.log(3) / math.sqrt(mu))


def test_bad_input():
    with pytest.raises(ValueError, match="`p`"):
        potential_max(10, 6, 0.5)
    with pytest.raises(ValueError, match="`K1`"):
        potential_min(10, 10, 2)
    with pytest.raises(ValueError, match="`eps`"):
        alignment_duration(1.5, 0.1)
    with pytest.raises(ValueError, match="`G_star`"):
        alignment_duration(1e-3, -0.1)
    with pytest.raises(ValueError, match="`y`"):
        separability_mu(np.ones((3, 2)), np.ones(2))
    # the closed form holds for orthonormal centres only (it returned a norm-2 "direction")
    with pytest.raises(ValueError, match="`centres` must be orthonormal"):
        potential_maximiser(2 * np.eye(4, 6), np.array([1.0, 1, -1, -1]), 3.0)
    with pytest.raises(ValueError, match="`X`"):
        alignment_time_bound(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([1.0, -1.0]))
