"""Ideal classifiers: formulas, numpy/torch agreement, Bayes against scipy densities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from gradflow.config import DataConfig
from gradflow.data import make_subclass_data
from gradflow.theory.classifiers import bayes_classifier, from_data, ideal_F, ideal_Fp


@pytest.fixture(scope="module")
def data():
    cfg = DataConfig(K=5, K1=2, D=8, alpha=0.4, n=200, centres="correlated", cosine=0.25)
    return make_subclass_data(cfg)


def test_F_and_Fp_formulas(data):
    X, C, y = data.X, data.centres, data.subclass_labels
    F = np.maximum(X @ data.mu_plus, 0) - np.maximum(X @ data.mu_minus, 0)
    np.testing.assert_allclose(ideal_F(C, y)(X), F, rtol=1e-13, atol=1e-15)
    for p in (1.0, 2.5):
        Fp = sum(y[k] * np.maximum(X @ C[k], 0) ** p for k in range(5))
        np.testing.assert_allclose(ideal_Fp(C, y, p)(X), Fp, rtol=1e-12, atol=1e-15)
    # p = 1: F_1 sums individual relus and is not F (THEORY.md s. 5)
    assert not np.allclose(ideal_Fp(C, y, 1.0)(X), F)


def test_bayes_equals_log_posterior_odds(data):
    # brute force with scipy Gaussian log densities and unequal weights
    X, C, y = data.X[:20], data.centres, data.subclass_labels
    w = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    cov = data.config.alpha**2 / data.D * np.eye(data.D)
    logp = np.stack([np.log(w[k]) + multivariate_normal(C[k], cov).logpdf(X) for k in range(5)], 1)
    want = np.logaddexp.reduce(logp[:, y > 0], 1) - np.logaddexp.reduce(logp[:, y < 0], 1)
    got = bayes_classifier(C, y, data.config.alpha, w)(X)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)  # both float64; cancellation


@pytest.mark.parametrize("kind,p", [("F", None), ("Fp", 1.0), ("Fp", 3.0), ("bayes", None)])
def test_numpy_torch_agree_and_derivatives(data, kind, p):
    clf = from_data(data, kind, p=p)
    X = data.X[:50]
    t = torch.tensor(X, requires_grad=True)
    out = clf(t)
    np.testing.assert_allclose(out.detach().numpy(), clf(X), rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad(out.sum(), t)
    # chain rule through z = C x: grad_x = grad_z C
    np.testing.assert_allclose(g.numpy(), clf.grad_z(X @ clf.centres.T) @ clf.centres,
                               rtol=1e-10, atol=1e-10)
    assert clf(torch.tensor(X, dtype=torch.float32)).dtype == torch.float32
    if kind != "F":  # Hessian in z against central differences of grad_z (O(h^2))
        Z = X[:3] @ clf.centres.T
        h = 1e-6
        fd = np.stack([(clf.grad_z(Z + h * e) - clf.grad_z(Z - h * e)) / (2 * h)
                       for e in np.eye(clf.K)], axis=2)
        scale = np.abs(fd).max() + 1
        np.testing.assert_allclose(clf.hess_z(Z), fd, atol=1e-5 * scale)


def test_bayes_accuracy_at_least_ideal(data):
    test = make_subclass_data(data.config, split="test", n=2000)
    acc = {k: np.mean(np.sign(from_data(data, k, p=3.0)(test.X)) == test.y)
           for k in ("F", "Fp", "bayes")}
    assert acc["bayes"] >= max(acc["F"], acc["Fp"]) - 0.005  # sampling noise ~ 1/sqrt(2000)


def test_bad_input(data):
    C, y = data.centres, data.subclass_labels
    with pytest.raises(ValueError, match="`p`"):
        ideal_Fp(C, y, 0.9)
    with pytest.raises(ValueError, match="`labels`"):
        ideal_F(C, y[:3])
    with pytest.raises(ValueError, match="`labels`"):
        ideal_F(C, np.ones(5))
    with pytest.raises(ValueError, match="`centres`"):
        ideal_F(np.ones(5), y)
    with pytest.raises(ValueError, match="`alpha`"):
        bayes_classifier(C, y, 0.0)
    with pytest.raises(ValueError, match="`weights`"):
        bayes_classifier(C, y, 0.1, weights=np.ones(5))
    with pytest.raises(ValueError, match="`x`"):
        ideal_F(C, y)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="`x`"):
        ideal_F(C, y)(torch.ones(2, 3))
    with pytest.raises(ValueError, match="`kind`"):
        from_data(data, "G")
