"""Gaussian-subclass generator: proportions, noise scale, centres, reproducibility."""
import numpy as np
import pytest
import torch

from gradflow import DataConfig, make_subclass_data


def test_shapes_labels_and_class_directions():
    cfg = DataConfig(K=10, K1=6, D=50, n=2000, alpha=0.1)
    d = make_subclass_data(cfg)
    assert d.X.shape == (2000, 50) and d.y.shape == (2000,)
    np.testing.assert_array_equal(d.y, np.where(d.subclass < 6, 1.0, -1.0))
    np.testing.assert_allclose(d.mu_plus, d.centres[:6].sum(0))
    np.testing.assert_allclose(np.linalg.norm(d.mubar_plus), 1.0)
    np.testing.assert_allclose(d.mubar_minus @ d.mubar_plus, 0.0, atol=1e-15)


def test_random_sizes_follow_uniform_proportions():
    d = make_subclass_data(DataConfig(K=10, K1=6, D=20, n=20000, seed=3))
    counts = np.bincount(d.subclass, minlength=10) / 20000
    # binomial std of a proportion 0.1 at n=20000 is 0.0021; 5 sigma
    np.testing.assert_allclose(counts, 0.1, atol=0.011)
    assert abs((d.y > 0).mean() - 0.6) < 0.015


def test_equal_sizes_are_exact():
    d = make_subclass_data(DataConfig(K=4, K1=2, D=8, n=400, sizes="equal"))
    np.testing.assert_array_equal(np.bincount(d.subclass), [100] * 4)


def test_noise_norm_is_alpha():
    cfg = DataConfig(K=4, K1=2, D=1000, n=500, alpha=0.3)
    d = make_subclass_data(cfg)
    noise = d.X - d.centres[d.subclass]
    norms = np.linalg.norm(noise, axis=1)
    # ||noise||^2 ~ alpha^2 chi2_D / D: mean alpha^2, relative std sqrt(2/D) = 4.5%
    assert abs(np.mean(norms**2) / 0.09 - 1) < 0.02
    assert np.all(np.abs(norms / 0.3 - 1) < 0.25)


@pytest.mark.parametrize("mode", ["basis", "random-orthonormal"])
def test_centres_are_orthonormal(mode):
    d = make_subclass_data(DataConfig(K=8, K1=3, D=30, centres=mode, n=10))
    np.testing.assert_allclose(d.centres @ d.centres.T, np.eye(8), atol=1e-12)


def test_correlated_centres_have_requested_cosine():
    d = make_subclass_data(DataConfig(K=6, K1=3, D=20, centres="correlated", cosine=-0.15, n=10))
    G = d.centres @ d.centres.T
    np.testing.assert_allclose(np.diag(G), 1.0, atol=1e-12)
    np.testing.assert_allclose(G[~np.eye(6, dtype=bool)], -0.15, atol=1e-12)


def test_seeded_reproducible_and_splits_differ():
    cfg = DataConfig(K=5, K1=2, D=10, n=50, centres="random-orthonormal", seed=9)
    a, b = make_subclass_data(cfg), make_subclass_data(cfg)
    np.testing.assert_array_equal(a.X, b.X)
    t = make_subclass_data(cfg, split="test")
    np.testing.assert_array_equal(a.centres, t.centres)
    assert not np.allclose(a.X, t.X)
    c = make_subclass_data(cfg.replace(seed=10))
    assert not np.allclose(a.centres, c.centres)


def test_torch_backend_and_dtype():
    cfg = DataConfig(K=4, K1=2, D=8, n=16)
    d = make_subclass_data(cfg, backend="torch", dtype="float32")
    assert isinstance(d.X, torch.Tensor) and d.X.dtype == torch.float32
    assert d.subclass.dtype == torch.long
    np.testing.assert_allclose(d.X.numpy(), make_subclass_data(cfg).X, rtol=1e-6)


def test_bad_arguments():
    cfg = DataConfig(K=4, K1=2, D=8)
    with pytest.raises(ValueError, match="`split` must be one of"):
        make_subclass_data(cfg, split="val")
    with pytest.raises(ValueError, match="`backend` must be one of"):
        make_subclass_data(cfg, backend="jax")
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        make_subclass_data(cfg, dtype="float16")
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
        make_subclass_data(cfg, n=0)
