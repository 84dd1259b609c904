"""Reduced alignment dynamics: extremal vectors of the population potential (THEORY.md s.4)."""
from __future__ import annotations

import numpy as np
import pytest

from gradflow.dynamics.reduced import (
    Potential,
    find_extremal_vectors,
    predicted_alignment_time,
    reduced_flow,
)

K, K1, D = 10, 6, 20
CENTRES = np.eye(K, D)
LABELS = np.where(np.arange(K) < K1, 1.0, -1.0)


def test_p1_finds_class_averages():
    pot = Potential.population(CENTRES, LABELS, 1.0)
    up = find_extremal_vectors(pot, n_starts=100, sign=+1, t_max=500)
    best = up.extrema[0]
    assert best.kind == "class average +" and best.isolated
    assert abs(best.G - np.sqrt(K1) / K) < 1e-6  # closed form G(mubar_+) = sqrt(K1)/K
    assert not up.degenerate
    down = find_extremal_vectors(pot, n_starts=100, sign=-1, t_max=500)
    assert down.extrema[0].kind == "class average -"
    assert abs(down.G_star + np.sqrt(K - K1) / K) < 1e-6
    # limits stuck on an activation boundary are reported, but never as isolated extrema
    assert all(not e.isolated for e in up.extrema if e.kind.startswith("subset"))


def test_p3_finds_every_centre():
    pot = Potential.population(CENTRES, LABELS, 3.0)
    up = find_extremal_vectors(pot, n_starts=120, sign=+1, t_max=500)
    down = find_extremal_vectors(pot, n_starts=120, sign=-1, t_max=500)
    found_up = {e.kind for e in up.extrema if e.isolated}
    found_down = {e.kind for e in down.extrema if e.isolated}
    assert found_up == {f"centre {k}" for k in range(K1)}
    assert found_down == {f"centre {k}" for k in range(K1, K)}
    for e in up.extrema:
        if e.isolated:
            assert abs(e.G - 1 / K) < 1e-8  # G(mu_k) = 1/K
    shares = sum(e.share for e in up.extrema if e.isolated)
    assert shares > 0.9 and abs(sum(e.share for e in up.extrema) - 1) < 1e-12


def test_p2_is_degenerate():
    pot = Potential.population(CENTRES, LABELS, 2.0)
    res = find_extremal_vectors(pot, n_starts=60, sign=+1, t_max=500)
    assert res.degenerate
    # every limit has the constant value 1/K on the face of maximisers
    assert all(abs(e.G - 1 / K) < 1e-6 for e in res.extrema if e.G > 0)


def test_p2_centre_is_not_isolated():
    """At p = 2, G is flat from mu_k toward any other positive centre (G = 1/K on the face),
    so a limit sitting on a centre must not be reported as an isolated maximum.

    Regression: the probe used a QR-rotated tangent basis, which mixes centres of both
    classes. At the limit the flow actually returns (mu_1 with ~-1e-11 on the other
    coordinates) every rotated direction lowered G, curvature -7e-3: 'isolated', and the
    run was wrongly 'not degenerate' (seed 0 below)."""
    from gradflow.dynamics.reduced import _tangent_curvature

    C = np.eye(K)
    pot2 = Potential.population(C, LABELS, 2.0)
    u = C[0] - 1e-11 * np.array([0, 1.06, 0.94, 0.77, 0.43, 0.78, 1.17, 0.57, 0.06, 0.23])
    u /= np.linalg.norm(u)
    assert _tangent_curvature(u, pot2, 1.0) > -1e-6 / K  # flat, up to round-off
    # p = 3: the same point is a strict maximum, curvature clearly negative
    assert _tangent_curvature(u, Potential.population(C, LABELS, 3.0), 1.0) < -1e-3
    assert find_extremal_vectors(pot2, n_starts=200, sign=+1, seed=0).degenerate


def test_reduced_flow_is_gradient_ascent_on_sphere():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5))
    y = np.sign(rng.standard_normal(50))
    pot = Potential.dataset(X, y, 3.0)
    U0 = rng.standard_normal((8, 5))
    G_prev = pot.value(U0 / np.linalg.norm(U0, axis=1, keepdims=True))
    U = U0
    for _ in range(5):
        U, _ = reduced_flow(U, pot, t_max=2.0)
        np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1.0, atol=1e-14)
        G = pot.value(U)
        assert np.all(G >= G_prev - 1e-12)  # ascent flow: G never decreases
        G_prev = G


def test_predicted_alignment_time_and_validation():
    assert predicted_alignment_time(1e-6, 0.1) == pytest.approx(np.log(1e6) / 0.1)
    with pytest.raises(ValueError, match="`eps`"):
        predicted_alignment_time(0.0, 0.1)
    with pytest.raises(ValueError, match="`G_star`"):
        predicted_alignment_time(1e-6, -1.0)
    with pytest.raises(ValueError, match="`n_starts`"):
        find_extremal_vectors(Potential.population(CENTRES, LABELS, 3.0), n_starts=0)
    with pytest.raises(ValueError, match="`sign`"):
        reduced_flow(np.ones((1, D)), Potential.population(CENTRES, LABELS, 3.0), 1.0, sign=2)
    pot = Potential.population(CENTRES, LABELS, 3.0)
    with pytest.raises(ValueError, match="`sign`"):
        reduced_flow(np.ones((1, D)), pot, 1.0, sign=True)
    with pytest.raises(ValueError, match="`gtol`"):
        reduced_flow(np.ones((1, D)), pot, 1.0, gtol=-1.0)
    with pytest.raises(ValueError, match="`U0` rows must be finite and non-zero"):
        reduced_flow(np.zeros((1, D)), pot, 1.0)


def test_relu_dataset_flow_finishes():
    # p = 1 on a finite dataset: the iterates chatter across kinks and G dips at every step
    # size; dt used to halve down to 1e-10 and the flow never reached t_max (~1 s now)
    import signal

    from gradflow.config import DataConfig
    from gradflow.data import make_subclass_data

    data = make_subclass_data(DataConfig(K=4, K1=2, D=10, n=40, alpha=0.1))
    pot = Potential.dataset(data.X, data.y, 1.0, centres=data.centres,
                            labels=np.array([1.0, 1.0, -1.0, -1.0]))

    def hung(*_):  # a termination guard, not a timing target
        raise RuntimeError("reduced_flow did not finish within 300 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(300)
    try:
        U, t_end = reduced_flow(np.random.default_rng(0).standard_normal((4, 10)), pot, 100.0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert t_end == pytest.approx(100.0) or np.max(np.linalg.norm(
        pot.riemannian_grad(U), axis=1)) < 1e-10
    assert np.all(np.isfinite(U)) and np.allclose(np.linalg.norm(U, axis=1), 1.0)
