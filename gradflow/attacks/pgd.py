"""Projected gradient descent (Madry et al. 2018) for l2 and l-inf budgets.

Iteration k (on the loss to be increased, per sample):

    d_{k+1} = Proj_{||d|| <= eps}( d_k + a_k s(grad_x loss(x + d_k, y)) ),

s the norm's steepest-ascent direction (g/||g||_2 for l2, sign g for l-inf) or,
with ``normalize=False``, the raw gradient. A sample counts as broken as soon
as any iterate has margin < 0, and that iterate is returned (it is checked
again by the base class). Options: random start in the ball, restarts (each
restart runs only on the samples not yet broken), a step schedule and early
stopping of broken samples.

``reference_pgd()`` is the reference protocol of Min & Vidal (THEORY.md
section 7): l2, exponential loss, 2000 steps of 0.1 along the normalised
gradient, projection onto the ball, start at the clean point.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_choice, check_int, check_real
from .base import ATTACK_LOSSES, Attack, AttackContext, expand_like

SCHEDULES = ("constant", "cosine", "step")


def step_schedule(kind: str, base: float, k: int, steps: int) -> float:
    """Step length at iteration k: constant a; cosine a (1 + cos(pi k / steps)) / 2;
    step: a, a/10 after 50% and a/100 after 75% of the steps."""
    if kind == "constant":
        return base
    if kind == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * k / steps))
    return base * (1.0 if k < 0.5 * steps else 0.1 if k < 0.75 * steps else 0.01)


class PGD(Attack):
    """Projected gradient ascent of ``loss`` inside the eps-ball.

    Parameters (keyword-only)
    -------------------------
    norm: 'l2' or 'linf'.  steps: iterations per restart.
    step_size: absolute step length a_0; default 2.5 eps / steps (Madry et al.).
    rel_step: if given, a_0 = rel_step * eps instead (per sample).
    loss: 'auto' | 'exponential' | 'logistic' | 'cross_entropy' | 'margin'.
    schedule: 'constant' | 'cosine' | 'step'.  normalize: use s(g) (default) or g.
    random_start: start at a random point of the ball; restarts: number of runs
    (restarts after the first always start at random); early_stop: stop
    spending gradient evaluations on a sample once it is broken.
    """

    name = "pgd"

    def __init__(self, *, norm="l2", steps: int = 100, step_size: float | None = None,
                 rel_step: float | None = None, loss: str = "auto",
                 schedule: str = "constant", normalize: bool = True,
                 random_start: bool = False, restarts: int = 1, early_stop: bool = True,
                 seed: int = 0, bounds=None):
        super().__init__(norm=norm, seed=seed, bounds=bounds)
        self.steps = check_int("steps", steps, 1)
        self.step_size = None if step_size is None else check_real(
            "step_size", step_size, 0.0, lo_open=True)
        self.rel_step = None if rel_step is None else check_real(
            "rel_step", rel_step, 0.0, lo_open=True)
        if self.step_size is not None and self.rel_step is not None:
            raise ValueError("give at most one of `step_size` and `rel_step`")
        self.loss = check_choice("loss", loss, ATTACK_LOSSES)
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.normalize = bool(normalize)
        self.random_start = bool(random_start)
        self.restarts = check_int("restarts", restarts, 1)
        self.early_stop = bool(early_stop)

    def _base_step(self, eps: torch.Tensor) -> torch.Tensor:
        if self.step_size is not None:
            return torch.full_like(eps, self.step_size)
        rel = self.rel_step if self.rel_step is not None else 2.5 / self.steps
        return rel * eps

    def _run(self, ctx: AttackContext, x, y, eps):
        n = x.shape[0]
        best = x.clone()
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        base = self._base_step(eps)
        for r in range(self.restarts):
            idx = torch.nonzero(~found).flatten()
            if idx.numel() == 0:
                break
            xa, ea, ba = x[idx], eps[idx], base[idx]
            if self.random_start or r > 0:
                d = self.norm.random_in_ball(xa.shape, ea, ctx.generator, x.dtype, x.device)
            else:
                d = torch.zeros_like(xa)
            for k in range(self.steps + 1):
                xk = self._clip(xa + d)
                if k == self.steps:  # last iterate: only check it
                    m = ctx.margin(xk, idx)
                else:
                    # normalised steps need only the direction, which must not underflow
                    _, g, m = ctx.loss_grad(xk, idx, self.loss, direction=self.normalize)
                hit = m < 0
                new = hit & ~found[idx]
                best[idx[new]] = xk[new]
                found[idx[new]] = True
                if k == self.steps:
                    break
                if self.early_stop and hit.any():
                    keep = ~hit
                    idx, xa, ea, ba, d, g = idx[keep], xa[keep], ea[keep], ba[keep], d[keep], g[keep]
                    if idx.numel() == 0:
                        break
                step = step_schedule(self.schedule, 1.0, k, self.steps) * ba
                s = self.norm.steepest(g) if self.normalize else g
                d = self.norm.project(d + expand_like(step, s) * s, ea)
        return best


def reference_pgd(*, steps: int = 2000, step_size: float = 0.1, early_stop: bool = False,
                  seed: int = 0) -> PGD:
    """The reference protocol (Min & Vidal, THEORY.md section 7): l2 PGD on the exponential
    loss, 2000 steps of 0.1 along the normalised gradient, projection onto the ball."""
    return PGD(norm="l2", steps=steps, step_size=step_size, loss="exponential",
               schedule="constant", normalize=True, random_start=False, restarts=1,
               early_stop=early_stop, seed=seed)
