"""Sup-distance estimator: exact constructions, planted deviation, numpy/torch, GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflow.config import DataConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.model import TwoLayerParams
from gradflow.theory.classifiers import from_data
from gradflow.theory.supdist import optimal_scale, reference_scale, sup_distance
from gradflow.torch_model import to_torch

SMALL = dict(n_rounds=2, n_starts=64, n_steps=300, step=0.01)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return make_subclass_data(DataConfig(K=6, K1=4, D=10, alpha=0.2, n=300, centres="correlated",
                                         cosine=0.2))


def test_exact_F_construction(data):
    # two ReLU neurons w = mu_+-, v = +-1/2: f = F/2 exactly, so c = 2 and the distance is 0
    P = TwoLayerParams(np.stack([data.mu_plus, data.mu_minus]), np.array([0.5, -0.5]))
    r = sup_distance(P, from_data(data, "F"), data.X, cfg=ModelConfig(width=2, p=1.0), **SMALL)
    assert r.c == pytest.approx(2.0, rel=1e-12) and r.c_reference == pytest.approx(2.0, rel=1e-12)
    assert r.value < 1e-6  # float64 rounding only (~1e-15)


def test_exact_Fp_construction_torch_module(data):
    # K pReLU(p=3) neurons at the centres: sigma = relu(<x,mu_k>)^3/||mu_k||^2 = relu^3 (unit mu)
    P = TwoLayerParams(data.centres.copy(), 3.0 * data.subclass_labels)
    net = to_torch(P, ModelConfig(width=6, p=3.0))
    r = sup_distance(net, from_data(data, "Fp", p=3.0), data.X, **SMALL)
    assert r.c == pytest.approx(1 / 3, rel=1e-12)
    assert r.value < 1e-6


def test_planted_deviation_recovered(data):
    # f = F + eta relu(<u, x>) with u orthogonal to every centre: with c = 1 the sup is
    # eta exactly (attained at x = u, where F(u) = 0)
    Q, _ = np.linalg.qr(np.concatenate([data.centres.T, np.eye(10)], axis=1))
    u = Q[:, 6]
    eta = 0.05
    P = TwoLayerParams(np.stack([data.mu_plus, data.mu_minus, u]), np.array([1.0, -1.0, eta]))
    r = sup_distance(P, from_data(data, "F"), c=1.0, cfg=ModelConfig(width=3, p=1.0),
                     n_rounds=2, n_starts=64, n_steps=400, step=0.01)
    assert abs(r.value - eta) <= 0.01 * eta
    assert r.value <= eta * (1 + 1e-12)  # a sup over the sphere can't exceed the true one
    assert abs(r.argmax @ u) > 0.99


def test_scales_agree():
    rng = np.random.default_rng(0)
    f, F = rng.standard_normal(100), rng.standard_normal(100)
    # least squares and the normal-equation ratio are the same number (rounding only)
    assert optimal_scale(f, F) == pytest.approx(reference_scale(f, F), rel=1e-12)
    with pytest.raises(ValueError, match="`f`"):
        optimal_scale(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="`F`"):
        reference_scale(np.ones(3), np.ones(4))


def test_bad_input(data):
    P = TwoLayerParams(np.stack([data.mu_plus, data.mu_minus]), np.array([1.0, -1.0]))
    clf = from_data(data, "F")
    with pytest.raises(ValueError, match="`cfg`"):
        sup_distance(P, clf, data.X)
    with pytest.raises(ValueError, match="`X`"):
        sup_distance(P, clf, data.X[:, :3], cfg=ModelConfig(width=2))
    with pytest.raises(ValueError, match="`n_starts`"):
        sup_distance(P, clf, data.X, cfg=ModelConfig(width=2), n_starts=0)
    with pytest.raises(ValueError, match="`c`"):
        sup_distance(P, clf, cfg=ModelConfig(width=2))
    # a NaN model used to give value -inf (no gap ever beat -inf) instead of an error
    nan_model = torch.nn.Sequential(torch.nn.Linear(data.X.shape[1], 1, dtype=torch.float64))
    with torch.no_grad():
        nan_model[0].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="`model` gives non-finite outputs"):
        sup_distance(nan_model, clf, data.X)
    with pytest.raises(ValueError, match="`model` gives non-finite outputs"):
        sup_distance(nan_model, clf, c=1.0)
    Xn = data.X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="`X` must be finite"):
        sup_distance(P, clf, Xn, cfg=ModelConfig(width=2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu(data):
    P = TwoLayerParams(data.centres.copy(), 3.0 * data.subclass_labels)
    P.W[0] += 0.05  # a small deviation so the distance is non-trivial
    clf, cfg = from_data(data, "Fp", p=3.0), ModelConfig(width=6, p=3.0)
    cpu = sup_distance(P, clf, data.X, cfg=cfg, **SMALL)
    gpu = sup_distance(P, clf, data.X, cfg=cfg, device="cuda", **SMALL)
    # same starts (CPU generator), same float64 arithmetic up to reduction order
    assert gpu.value == pytest.approx(cpu.value, rel=1e-9)
