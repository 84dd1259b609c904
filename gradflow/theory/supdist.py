"""Sup-distance between a trained network and an ideal classifier (THEORY.md section 5).

    dist(f, F) = sup_{||x|| = 1} |c f(x) - F(x)|

The scale c is the least-squares fit on data,
    c* = argmin_c mean_i (c f(x_i) - F(x_i))^2 = E[f F] / E[f^2],
whose normal equation is exactly the reference code's formula, so ``optimal_scale``
(solved as a least-squares problem) and ``reference_scale`` (the ratio) agree;
both are returned so a user can check it.

The sup is estimated by batched normalised projected gradient ascent on the
sphere, from ``n_rounds`` x ``n_starts`` uniform random starts (reference: 10 x
1000, 2000 steps of 0.01):
    x <- (x + step g/||g||) / ||x + step g/||g||||,   g = grad_x |c f(x) - F(x)|,
keeping the largest value seen at any iterate. It is a lower bound on the true
sup that is tight when enough starts reach the maximiser.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .._validate import check_int, check_real
from .classifiers import IdealClassifier


@dataclass
class SupDistResult:
    """value: the estimated sup; c: the scale used; c_reference: E[fF]/E[f^2] on the data
    (None if c was given and no data); argmax: (D,) the maximising unit vector."""

    value: float
    c: float
    c_reference: float | None
    argmax: np.ndarray


def _as_module(model, cfg, device, dtype) -> torch.nn.Module:
    from ..model import TwoLayerParams
    from ..torch_model import to_torch

    if isinstance(model, TwoLayerParams):
        if cfg is None:
            raise ValueError("`cfg` (a ModelConfig) is required when `model` is TwoLayerParams")
        return to_torch(model, cfg, dtype=dtype, device=device)
    if isinstance(model, torch.nn.Module):
        # nn.Module.to works in place: a copy keeps the caller's device and dtype
        return copy.deepcopy(model).to(device=device, dtype=dtype)
    raise ValueError("`model` must be a TwoLayerParams (with `cfg`) or a torch.nn.Module")


def _values(module, classifier, X: torch.Tensor):
    with torch.no_grad():
        f = module(X).reshape(-1)
        F = classifier.torch(X)
    return f, F


def reference_scale(f, F) -> float:
    """c = E[f F] / E[f^2] (the reference code's scale)."""
    f = np.asarray(f, dtype=np.float64).ravel()
    F = np.asarray(F, dtype=np.float64).ravel()
    if f.shape != F.shape:
        raise ValueError(f"`F` must have the same length as `f` ({f.size}), got {F.size}")
    ff = float(f @ f)
    if ff == 0.0:
        raise ValueError("`f` is identically zero on the data: the scale is undefined")
    return float(f @ F) / ff


def optimal_scale(f, F) -> float:
    """c* = argmin_c mean (c f - F)^2, solved as a one-column least-squares problem."""
    f = np.asarray(f, dtype=np.float64).ravel()
    F = np.asarray(F, dtype=np.float64).ravel()
    if f.shape != F.shape:
        raise ValueError(f"`F` must have the same length as `f` ({f.size}), got {F.size}")
    if not np.any(f):
        raise ValueError("`f` is identically zero on the data: the scale is undefined")
    return float(np.linalg.lstsq(f[:, None], F, rcond=None)[0][0])


def sup_distance(model, classifier: IdealClassifier, X=None, *, c: float | None = None,
                 cfg=None, n_rounds: int = 10, n_starts: int = 1000, n_steps: int = 2000,
                 step: float = 0.01, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float64, seed: int = 0) -> SupDistResult:
    """sup over the unit sphere of |c f(x) - F(x)|, with c fitted on data X unless given.

    model: a ``TwoLayerParams`` (with ``cfg``, a ModelConfig) or a torch module
    mapping (B, D) -> (B,); classifier: the ideal classifier F; X: (n, D) data for
    the scale (numpy or torch); c: a fixed scale instead; n_rounds x n_starts
    random starts, n_steps ascent steps of length ``step``; device: 'cpu' or
    'cuda'; seed: for the starts (a torch generator on CPU, so runs are
    reproducible across devices).
    """
    if not isinstance(classifier, IdealClassifier):
        raise ValueError("`classifier` must be an IdealClassifier")
    check_int("n_rounds", n_rounds, 1)
    check_int("n_starts", n_starts, 1)
    check_int("n_steps", n_steps, 0)
    check_real("step", step, 0.0, lo_open=True)
    D = classifier.D
    module = _as_module(model, cfg, device, dtype)
    c_ref = None
    if X is not None:
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        if Xt.dim() != 2 or Xt.shape[1] != D:
            raise ValueError(f"`X` must have shape (n, {D}), got {tuple(Xt.shape)}")
        if not bool(torch.isfinite(Xt).all()):
            raise ValueError("`X` must be finite; it holds NaN or inf")
        f, F = _values(module, classifier, Xt)
        f, F = f.cpu().numpy(), F.cpu().numpy()
        if not np.isfinite(f).all():  # a NaN gap never counts as the sup: say so instead
            raise ValueError("`model` gives non-finite outputs on `X`; its sup-distance is "
                             "undefined")
        c_ref = reference_scale(f, F)
        if c is None:
            c = optimal_scale(f, F)
    if c is None:
        raise ValueError("give either data `X` to fit the scale or a scale `c`")
    c = check_real("c", c)
    gen = torch.Generator().manual_seed(seed)
    best, best_x = -np.inf, None
    for _ in range(n_rounds):
        x = torch.randn(n_starts, D, generator=gen, dtype=dtype).to(device)
        x = x / x.norm(dim=1, keepdim=True)
        run_best = torch.full((n_starts,), -np.inf, dtype=dtype, device=device)
        run_x = x.clone()
        for k in range(n_steps + 1):
            x.requires_grad_(True)
            gap = (c * module(x).reshape(-1) - classifier.torch(x)).abs()
            with torch.no_grad():
                if not bool(torch.isfinite(gap).all()):
                    raise ValueError("`model` gives non-finite outputs on the unit sphere; its "
                                     "sup-distance is undefined")
                better = gap > run_best
                run_best = torch.where(better, gap, run_best)
                run_x[better] = x[better]
            if k == n_steps:
                break
            (g,) = torch.autograd.grad(gap.sum(), x)
            with torch.no_grad():
                gn = g.norm(dim=1, keepdim=True)
                x = x + step * g / torch.where(gn > 0, gn, torch.ones_like(gn))
                x = x / x.norm(dim=1, keepdim=True)
        i = int(torch.argmax(run_best))
        if float(run_best[i]) > best:
            best, best_x = float(run_best[i]), run_x[i].detach().cpu().numpy().copy()
    return SupDistResult(best, float(c), c_ref, best_x)

