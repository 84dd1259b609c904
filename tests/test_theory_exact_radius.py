"""Exact per-sample radii against brute-force constrained searches."""
from __future__ import annotations

import numpy as np
import pytest
from test_theory_helpers import enumerate_radius_F1, slsqp_radius

from gradflow.config import DataConfig
from gradflow.data import make_subclass_data
from gradflow.theory.classifiers import bayes_classifier, from_data, ideal_F, ideal_Fp
from gradflow.theory.exact_radius import exact_radius
from gradflow.theory.radii import radius_F, radius_Fp


def _data(K=10, K1=6, D=16, centres="basis", n=1000, alpha=0.3):
    cos = 0.3 if centres == "correlated" else 0.0
    return make_subclass_data(DataConfig(K=K, K1=K1, D=D, alpha=alpha, n=n, centres=centres,
                                         cosine=cos, seed=3), split="test")


@pytest.mark.parametrize("centres", ["basis", "correlated"])
def test_F_exact_radius_matches_bruteforce(centres):
    d = _data(centres=centres)
    clf = from_data(d, "F")
    res = exact_radius(d.X, clf)
    assert res.certified.all()
    # boundary points: ||b - x|| = r and F(b) = 0 (projection onto a hyperplane: rounding only)
    np.testing.assert_allclose(np.linalg.norm(res.boundary - d.X, axis=1), res.radius, rtol=1e-12)
    np.testing.assert_allclose(clf.numpy(res.boundary), 0.0, atol=1e-12)
    for i in range(8):
        bf = slsqp_radius(d.X[i], clf, n_random=10)
        # closed form vs SLSQP converged to ftol 1e-15: 1e-6 relative is loose; and the
        # exact value can never exceed a feasible brute-force value
        assert abs(res.radius[i] - bf) <= 1e-6 * bf
        assert res.radius[i] <= bf * (1 + 1e-9)


@pytest.mark.parametrize("p,centres,n", [(1.5, "basis", 1000), (3.0, "correlated", 1000),
                                         (3.0, "basis", 200), (1.5, "correlated", 200)])
def test_Fp_exact_radius_matches_bruteforce(p, centres, n):
    d = _data(centres=centres, n=n)
    clf = from_data(d, "Fp", p=p)
    res = exact_radius(d.X, clf)  # 1000 noisy points in two of the cases
    assert res.certified.mean() > 0.98
    score = clf.numpy(res.boundary)
    # every returned point has flipped sign (up to the 1e-10 feasibility slack) ...
    assert np.all(np.sign(clf.numpy(d.X)) * score <= 1e-10)
    # ... and certified KKT points lie on the boundary (Newton-converged: ~1e-12)
    np.testing.assert_allclose(score[res.certified], 0.0, atol=1e-9)
    for i in range(6):
        bf = slsqp_radius(d.X[i], clf, n_random=6)
        # both are KKT points converged to ~1e-12; 1e-6 is the brief's tolerance. The exact
        # radius must never exceed a feasible brute-force value.
        assert abs(res.radius[i] - bf) <= 1e-6 * bf, (i, res.radius[i], bf)


@pytest.mark.parametrize("centres", ["basis", "correlated"])
def test_F1_exact_radius_matches_pattern_enumeration(centres):
    # F_1 is piecewise linear; the reference enumerates all 2^K linear regions (exact).
    d = _data(K=6, K1=3, D=9, centres=centres, n=200)
    clf = from_data(d, "Fp", p=1.0)
    res = exact_radius(d.X, clf)
    assert res.certified.all()
    for i in range(10):
        bf = enumerate_radius_F1(d.X[i], clf)
        # both exact projections onto the same polyhedral piece: rounding, well below 1e-6
        assert abs(res.radius[i] - bf) <= 1e-6 * bf


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 4.0])
def test_radius_at_centres_equals_closed_form(p):
    K, K1 = 10, 6
    labels = np.where(np.arange(K) < K1, 1.0, -1.0)
    C = np.eye(K, K + 2)
    res = exact_radius(C, ideal_Fp(C, labels, p))
    want = [radius_Fp(p, K, K1, 1 if k < K1 else -1) for k in range(K)]
    np.testing.assert_allclose(res.radius, want, rtol=1e-9)  # Newton-polished KKT points
    np.testing.assert_allclose(exact_radius(C, ideal_F(C, labels)).radius, radius_F(K),
                               rtol=1e-14)


def test_labels_and_misclassified_points():
    d = _data(n=50)
    clf = from_data(d, "Fp", p=3.0)
    y = d.y.copy()
    y[:5] *= -1  # wrong labels: already misclassified, radius 0
    res = exact_radius(d.X, clf, y=y)
    assert np.all(res.radius[:5] == 0)
    np.testing.assert_allclose(res.radius[5:], exact_radius(d.X[5:], clf).radius)


def test_bayes_radius_close_to_ceiling():
    # THEORY 6: the Bayes classifier gets within O(alpha) of sqrt(2)/2 at the centres.
    K, K1 = 6, 3
    labels = np.where(np.arange(K) < K1, 1.0, -1.0)
    C = np.eye(K, 8)
    for alpha in (0.05, 0.2):
        r = exact_radius(C, bayes_classifier(C, labels, alpha)).radius
        assert np.all(np.abs(r - np.sqrt(0.5)) < 0.1 * alpha + 1e-9)


def test_bad_input():
    d = _data(n=10)
    clf = from_data(d, "F")
    with pytest.raises(ValueError, match="`x`"):
        exact_radius(np.ones((3, 5)), clf)
    with pytest.raises(ValueError, match="`classifier`"):
        exact_radius(d.X, lambda x: x)
    with pytest.raises(ValueError, match="`y`"):
        exact_radius(d.X, clf, y=np.ones(3))
    with pytest.raises(ValueError, match="`n_random`"):
        exact_radius(d.X, from_data(d, "Fp", p=2), n_random=-1)
