"""Training metrics computed on the device: stable ranks through Gram matrices.

The stable rank ||M||_F^2 / ||M||_2^2 equals trace(G) / lambda_max(G) for the
Gram matrix G = M^T M (or M M^T, whichever is smaller), so a hidden-feature
matrix H (n, h) with n >> h never needs an SVD: we accumulate G = H^T H over
sample blocks and take one symmetric eigenvalue. It agrees with
``gradflow.linalg.stable_rank`` (the numpy SVD definition), which the tests check.
"""
from __future__ import annotations

import torch


def stable_rank_gram(G: torch.Tensor) -> torch.Tensor:
    """trace(G) / lambda_max(G) for symmetric PSD G (..., m, m), in float64; 0 where G = 0."""
    G = G.to(torch.float64)
    top = torch.linalg.eigvalsh(G)[..., -1]
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)
    return torch.where(top > 0, tr / torch.where(top > 0, top, torch.ones_like(top)),
                       torch.zeros_like(top))


def gram_small_side(M: torch.Tensor) -> torch.Tensor:
    """M^T M or M M^T (..., k, k) with k = min of the last two sizes, in float64."""
    M = M.detach().to(torch.float64)
    if M.shape[-2] >= M.shape[-1]:
        return M.transpose(-2, -1) @ M
    return M @ M.transpose(-2, -1)


def stable_rank_torch(M: torch.Tensor) -> torch.Tensor:
    """Stable rank ||M||_F^2 / ||M||_2^2 of M (..., a, b) (batched), as a float64 tensor."""
    return stable_rank_gram(gram_small_side(M))
