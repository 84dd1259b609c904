"""Gaussian-subclass data (THEORY.md section 1).

K unit centres mu_1..mu_K in R^D; subclasses 1..K1 have label +1, K1+1..K
label -1. A sample is x = mu_k + noise, noise ~ N(0, alpha^2/D I_D).

Seeding: the centres come from ``seed`` alone, and each split draws its samples
from its own child stream, so train and test share centres but not noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_choice
from .config import DataConfig

_SPLITS = {"train": 0, "test": 1}


@dataclass
class SubclassData:
    """One split of Gaussian-subclass data.

    X (n, D); y (n,) in {-1, +1}; subclass (n,) in 0..K-1; centres (K, D) unit rows;
    subclass_labels (K,) in {-1,+1}; mu_plus / mu_minus: sums of the positive /
    negative centres; mubar_plus / mubar_minus: their unit versions.
    """

    X: np.ndarray | torch.Tensor
    y: np.ndarray | torch.Tensor
    subclass: np.ndarray | torch.Tensor
    centres: np.ndarray | torch.Tensor
    subclass_labels: np.ndarray | torch.Tensor
    mu_plus: np.ndarray | torch.Tensor
    mu_minus: np.ndarray | torch.Tensor
    config: DataConfig

    @property
    def mubar_plus(self):
        return self.mu_plus / _norm(self.mu_plus)

    @property
    def mubar_minus(self):
        return self.mu_minus / _norm(self.mu_minus)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def D(self) -> int:
        return self.X.shape[1]


def _norm(a):
    return torch.linalg.norm(a) if isinstance(a, torch.Tensor) else np.linalg.norm(a)


def make_centres(cfg: DataConfig) -> np.ndarray:
    """The K unit centres as rows of a (K, D) float64 array.

    basis: e_1..e_K. random-orthonormal: K orthonormal rows from a QR of a
    Gaussian matrix. correlated: unit rows with pairwise cosine ``cfg.cosine``
    (Cholesky factor of (1-c) I + c 11^T placed in a random orthonormal frame).
    """
    K, D = cfg.K, cfg.D
    if cfg.centres == "basis":
        return np.eye(K, D)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7919]))
    Q, R = np.linalg.qr(rng.standard_normal((D, K)))
    Q = Q * np.sign(np.diag(R))  # make the QR unique so the frame is reproducible
    if cfg.centres == "random-orthonormal":
        return Q.T.copy()
    gram = (1.0 - cfg.cosine) * np.eye(K) + cfg.cosine * np.ones((K, K))
    L = np.linalg.cholesky(gram)  # rows of L have Gram matrix `gram`
    return L @ Q.T


def _subclass_indices(cfg: DataConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    if cfg.sizes == "random":
        return rng.integers(0, cfg.K, size=n)
    idx = np.arange(n) % cfg.K
    return rng.permutation(idx)


def make_subclass_data(
    cfg: DataConfig,
    split: str = "train",
    n: int | None = None,
    backend: str = "numpy",
    dtype: str = "float64",
    device: str | None = None,
) -> SubclassData:
    """Sample one split of the Gaussian-subclass model.

    Parameters
    ----------
    cfg: the data configuration (centres and sizes follow it).
    split: 'train' or 'test'; they share centres and draw independent noise.
    n: number of samples (default ``cfg.n``).
    backend: 'numpy' or 'torch'; dtype: 'float32' or 'float64'.
    """
    check_choice("split", split, tuple(_SPLITS))
    check_choice("backend", backend, ("numpy", "torch"))
    check_choice("dtype", dtype, ("float32", "float64"))
    if n is None:
        n = cfg.n
    elif isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be an integer >= 1, got {n!r}")
    centres = make_centres(cfg)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 104729, _SPLITS[split]]))
    sub = _subclass_indices(cfg, n, rng)
    noise = rng.standard_normal((n, cfg.D)) * (cfg.alpha / np.sqrt(cfg.D))
    X = centres[sub] + noise
    labels = np.where(np.arange(cfg.K) < cfg.K1, 1.0, -1.0)
    y = labels[sub]
    mu_plus = centres[: cfg.K1].sum(axis=0)
    mu_minus = centres[cfg.K1 :].sum(axis=0)
    arrays = dict(X=X, y=y, subclass=sub, centres=centres, subclass_labels=labels,
                  mu_plus=mu_plus, mu_minus=mu_minus)
    if backend == "numpy":
        out = {k: (a if k == "subclass" else a.astype(dtype)) for k, a in arrays.items()}
    else:
        tdt = getattr(torch, dtype)
        out = {
            k: torch.as_tensor(a, dtype=torch.long if k == "subclass" else tdt, device=device)
            for k, a in arrays.items()
        }
    return SubclassData(**out, config=cfg)
