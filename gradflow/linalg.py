"""Small spectral summaries shared by the training metrics and the alignment metrics."""
from __future__ import annotations

import numpy as np
import torch


def stable_rank(M) -> float:
    """Stable rank ||M||_F^2 / ||M||_2^2 (1 for rank one, r for r equal singular values).

    Accepts numpy arrays or torch tensors (computed in float64). A zero matrix gives 0.
    """
    if isinstance(M, torch.Tensor):
        M = M.detach().to("cpu", torch.float64).numpy()
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise ValueError(f"`M` must be 2-dimensional, got shape {M.shape}")
    fro2 = float(np.sum(M * M))
    if fro2 == 0.0:
        return 0.0
    top = float(np.linalg.norm(M, 2))
    return fro2 / (top * top)


def participation_ratio(c) -> float:
    """Participation ratio (sum c)^2 / sum c^2 of non-negative weights c (1..len(c))."""
    c = np.abs(np.asarray(c, dtype=np.float64)).ravel()
    s2 = float(np.sum(c * c))
    return 0.0 if s2 == 0.0 else float(np.sum(c)) ** 2 / s2
