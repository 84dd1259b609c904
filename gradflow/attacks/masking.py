"""Gradient-masking check: a gradient-free l2 attack on a subset, compared with gradient attacks.

Gradient attacks can overstate robustness when gradients vanish or mislead
(capped ReLU with a small cap saturates and zeroes them). ``RaySearchL2`` uses
forward passes only. It minimises the boundary distance along a ray,
r(u) = min{t > 0 : m(x + t u) < 0}, over unit directions u:

1. starts: the nearest anchors of another class (default: the batch) and
   ``n_random`` Gaussian directions probed at radii r0 2^k up to ``max_radius``;
2. random search: propose u' = normalise(u + sigma z), z ~ N(0, I/dim); if
   m(x + r(u) u') < 0 then r(u') < r(u), located by ray root-finding, and the
   proposal is kept; sigma grows by 1.5 on success and shrinks by 0.85 on failure.

``check_gradient_masking`` runs it on a subset and warns (``GradientMaskingWarning``)
when it finds points closer than the gradient attacks by more than ``rtol``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .._validate import check_int, check_real
from .base import TORCH_SEED_MAX, Attack, AttackContext, check_inputs, expand_like
from .minnorm import MinNormL2, _unit, past_ties, ray_root


class GradientMaskingWarning(UserWarning):
    """A gradient-free attack beat the gradient attacks: gradients may be masked."""


class RaySearchL2(Attack):
    """Gradient-free minimum-norm l2 attack (forward passes only); see the module docstring."""

    name = "raysearch"
    minimum_norm = True
    norms = ("l2",)

    def __init__(self, *, steps: int = 300, n_random: int = 20, max_radius: float = 10.0,
                 sigma: float = 0.3, anchors: torch.Tensor | None = None, anchor_starts: int = 8,
                 root_iters: int = 12, seed: int = 0, norm: str = "l2"):
        super().__init__(norm=norm, seed=seed)
        self.steps = check_int("steps", steps, 0)
        self.n_random = check_int("n_random", n_random, 0)
        self.max_radius = check_real("max_radius", max_radius, 0.0, lo_open=True)
        self.sigma = check_real("sigma", sigma, 0.0, lo_open=True)
        self.root_iters = check_int("root_iters", root_iters, 1)
        # anchors reuse MinNormL2's gradient-free anchor search (no gradient evaluations)
        self._anchor = MinNormL2(search_steps=0, refine_steps=0, anchors=anchors,
                                 anchor_starts=anchor_starts, root_iters=root_iters)

    def _random_starts(self, ctx, x, m0, u_best, r_best):
        n = x.shape[0]
        for _ in range(self.n_random):
            z = torch.randn(x.shape, generator=ctx.generator, dtype=x.dtype, device=x.device)
            u, _ = _unit(z)
            t = torch.full((n,), self.max_radius / 2 ** 10, dtype=x.dtype, device=x.device)
            hit = torch.zeros(n, dtype=torch.bool, device=x.device)
            t_hit = torch.full_like(t, float("inf"))
            m_hit = torch.zeros_like(t)
            for _k in range(11):  # probe r0 2^k up to max_radius, closest crossing first
                rows = torch.nonzero(~hit & (m0 > 0) & (t < r_best)).flatten()
                if rows.numel() == 0:
                    break
                m = ctx.margin(x[rows] + expand_like(t[rows], x[rows]) * u[rows], rows)
                adv = m < 0
                hit[rows[adv]] = True
                t_hit[rows[adv]] = t[rows[adv]]
                m_hit[rows[adv]] = m[adv]
                t = t * 2
            rows = torch.nonzero(hit).flatten()
            if rows.numel() == 0:
                continue
            lo = torch.zeros_like(t_hit[rows])
            tr, _ = ray_root(ctx, x[rows], u[rows], lo, m0[rows].clone(), t_hit[rows].clone(),
                             m_hit[rows].clone(), rows, self.root_iters)
            better = tr < r_best[rows]
            r_best[rows[better]] = tr[better]
            u_best[rows[better]] = u[rows][better]
        return u_best, r_best

    def _run(self, ctx: AttackContext, x, y, eps):
        m0 = ctx.margin(x)
        u, r = self._anchor._anchor_starts(ctx, x, y, m0)
        u, r = self._random_starts(ctx, x, m0, u, r)
        sigma = torch.full_like(r, self.sigma)
        dim = x[0].numel()
        for _ in range(self.steps):
            rows = torch.nonzero(torch.isfinite(r) & (sigma > 1e-6)).flatten()
            if rows.numel() == 0:
                break
            xa, ua, ra = x[rows], u[rows], r[rows]
            z = torch.randn(xa.shape, generator=ctx.generator, dtype=x.dtype, device=x.device)
            un, _ = _unit(ua + expand_like(sigma[rows], ua) * z / dim ** 0.5)
            m = ctx.margin(xa + expand_like(ra, xa) * un, rows)
            ok = m < 0
            a = torch.nonzero(ok).flatten()
            if a.numel():
                tr, _ = ray_root(ctx, xa[a], un[a], torch.zeros_like(ra[a]), m0[rows[a]].clone(),
                                 ra[a].clone(), m[a].clone(), rows[a], self.root_iters)
                u[rows[a]] = un[a]
                r[rows[a]] = torch.minimum(tr, ra[a])
            sigma[rows] = torch.where(ok, 1.5 * sigma[rows], 0.85 * sigma[rows]).clamp(max=2.0)
        if eps is not None:
            r = torch.where(r <= eps, r, torch.full_like(r, float("inf")))
        # float32 roots can be ties on the whole batch
        return past_ties(ctx, x, u, r, torch.isfinite(r))


@dataclass
class MaskingReport:
    """Per-sample comparison on the checked subset.

    indices: rows of the batch checked; gradient_radius / free_radius: distances found
    by the gradient attacks and by the gradient-free attack (inf = none found);
    flagged: free_radius < (1 - rtol) gradient_radius; fraction: flagged share.
    """

    indices: np.ndarray
    gradient_radius: np.ndarray
    free_radius: np.ndarray
    flagged: np.ndarray
    rtol: float

    @property
    def fraction(self) -> float:
        return float(self.flagged.mean()) if self.flagged.size else 0.0

    @property
    def masked(self) -> bool:
        return bool(self.flagged.any())


def check_gradient_masking(model, x: torch.Tensor, y, gradient_radius=None, *, subset: int = 64,
                           rtol: float = 0.01, attack: RaySearchL2 | None = None, seed: int = 0,
                           warn: bool = True) -> MaskingReport:
    """Run a gradient-free l2 attack on up to ``subset`` correctly classified points.

    ``gradient_radius`` (n,): distances in [0, inf] found by the gradient attacks (inf
    where they failed, 0 for misclassified points); default: a purely gradient-based
    ``MinNormL2`` (no anchors). A ``GradientMaskingWarning`` is issued when any checked
    point is flagged. ``seed`` (int >= 0) picks the subset and seeds the default attacks.
    """
    x, y = check_inputs(x, y)
    subset = check_int("subset", subset, 1)
    rtol = check_real("rtol", rtol, 0.0, 1.0)
    seed = check_int("seed", seed, 0, TORCH_SEED_MAX)
    n = x.shape[0]
    if gradient_radius is None:
        res = MinNormL2(anchor_starts=0, seed=seed)(model, x, y)
        gr = torch.where(res.success, res.distance, torch.full_like(res.distance, float("inf")))
        correct = res.clean_correct
    else:
        gr = torch.as_tensor(gradient_radius, dtype=x.dtype, device=x.device)
        if gr.shape != (n,):
            raise ValueError(f"`gradient_radius` must have shape ({n},), got {tuple(gr.shape)}")
        # inf is allowed (the gradient attacks failed there); NaN or < 0 is no distance
        if torch.any(torch.isnan(gr) | (gr < 0)):
            raise ValueError("`gradient_radius` must hold distances in [0, inf] (inf where the "
                             "gradient attacks failed), got NaN or negative values")
        correct = gr > 0
    cand = torch.nonzero(correct).flatten().cpu().numpy()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(cand, size=min(subset, cand.size), replace=False))
    if idx.size == 0:
        return MaskingReport(idx, np.zeros(0), np.zeros(0), np.zeros(0, bool), rtol)
    ti = torch.as_tensor(idx, device=x.device)
    atk = attack if attack is not None else RaySearchL2(seed=seed, anchors=x)
    res = atk(model, x[ti], y[ti])
    free = torch.where(res.success, res.distance, torch.full_like(res.distance, float("inf")))
    g = gr[ti].cpu().numpy()
    f = free.cpu().numpy()
    flagged = f < (1 - rtol) * g
    report = MaskingReport(idx, g, f, flagged, rtol)
    if warn and report.masked:
        warnings.warn(
            f"gradient masking suspected: a gradient-free attack found closer adversarial points "
            f"for {int(flagged.sum())}/{idx.size} checked samples (median ratio "
            f"{np.median(f[flagged] / g[flagged]):.3g}); gradient-based robustness is overstated",
            GradientMaskingWarning, stacklevel=2)
    return report
