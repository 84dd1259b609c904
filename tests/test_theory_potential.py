"""Tests of the alignment potentials G(u) against closed forms and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from gradflow.config import DataConfig
from gradflow.data import make_subclass_data
from gradflow.theory.potential import (
    dataset_potential,
    dataset_potential_grad,
    population_potential,
    population_potential_grad,
    riemannian_grad,
)


def _setup(K=10, K1=6, D=20, centres="basis", cosine=0.0):
    cfg = DataConfig(K=K, K1=K1, D=D, alpha=0.0, n=5 * K, centres=centres, cosine=cosine,
                     sizes="equal")
    return make_subclass_data(cfg)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_population_values_closed_form(p):
    d = _setup()
    K, K1 = 10, 6
    # G(mubar_+) = K1 * (1/K) * K1^(-p/2); p=1: sqrt(K1)/K. G(mu_k) = 1/K.
    g_bar = population_potential(d.mubar_plus, d.centres, d.subclass_labels, p)
    assert g_bar == pytest.approx(K1 ** (1 - p / 2) / K, rel=1e-14)  # exact arithmetic up to rounding
    g_k = population_potential(d.centres, d.centres, d.subclass_labels, p)
    np.testing.assert_allclose(g_k, d.subclass_labels / K, rtol=1e-14)


@pytest.mark.parametrize("p", [1.0, 2.5])
def test_dataset_equals_population_at_zero_noise(p):
    # alpha = 0 with equal subclass sizes: the empirical mean equals the population mean.
    d = _setup(centres="correlated", cosine=0.2)
    U = np.random.default_rng(0).standard_normal((7, d.D))
    np.testing.assert_allclose(dataset_potential(U, d.X, d.y, p),
                               population_potential(U, d.centres, d.subclass_labels, p),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dataset_potential_grad(U, d.X, d.y, p),
                               population_potential_grad(U, d.centres, d.subclass_labels, p),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_gradient_matches_finite_differences(p):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 6))
    y = np.where(rng.random(40) < 0.5, -1.0, 1.0)
    U = rng.standard_normal((5, 6))
    g = dataset_potential_grad(U, X, y, p)
    h = 1e-6
    fd = np.stack([(dataset_potential(U + h * e, X, y, p) - dataset_potential(U - h * e, X, y, p))
                   / (2 * h) for e in np.eye(6)], axis=1)
    # Central differences: O(h^2) truncation + O(eps/h) rounding ~ 1e-9; random points
    # lie almost surely away from the kinks of relu.
    np.testing.assert_allclose(g, fd, atol=1e-7)


def test_riemannian_grad_is_tangent_and_matches_sphere_derivative():
    rng = np.random.default_rng(2)
    d = _setup()
    U = rng.standard_normal((4, d.D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    R = riemannian_grad(U, population_potential_grad(U, d.centres, d.subclass_labels, 3.0))
    np.testing.assert_allclose(np.sum(R * U, axis=1), 0.0, atol=1e-15)
    # Derivative of G along the geodesic u cos t + v sin t equals <R, v> for unit tangent v.
    v = rng.standard_normal(d.D)
    v -= (U[0] @ v) * U[0]
    v /= np.linalg.norm(v)
    t = 1e-6
    gp = population_potential(U[0] * np.cos(t) + v * np.sin(t), d.centres, d.subclass_labels, 3.0)
    gm = population_potential(U[0] * np.cos(t) - v * np.sin(t), d.centres, d.subclass_labels, 3.0)
    assert (gp - gm) / (2 * t) == pytest.approx(R[0] @ v, abs=1e-8)  # O(t^2) + rounding


def test_single_direction_shapes():
    d = _setup()
    assert isinstance(population_potential(d.mubar_plus, d.centres, d.subclass_labels, 1), float)
    assert population_potential_grad(d.mubar_plus, d.centres, d.subclass_labels, 1).shape == (d.D,)


def test_bad_input():
    d = _setup()
    with pytest.raises(ValueError, match="`p`"):
        population_potential(d.mubar_plus, d.centres, d.subclass_labels, 0.5)
    with pytest.raises(ValueError, match="`centres`"):
        population_potential(np.ones(3), d.centres, d.subclass_labels, 1)
    with pytest.raises(ValueError, match="`labels`"):
        population_potential(d.mubar_plus, d.centres, d.subclass_labels[:3], 1)
    with pytest.raises(ValueError, match="`weights`"):
        population_potential(d.mubar_plus, d.centres, d.subclass_labels, 1, weights=np.ones(10))
    with pytest.raises(ValueError, match="`y`"):
        dataset_potential(d.mubar_plus, d.X, 2 * d.y, 1)
    with pytest.raises(ValueError, match="`grad`"):
        riemannian_grad(np.ones((2, 3)), np.ones((3, 3)))
