"""Fast gradient sign method and its l2 twin (one gradient evaluation per sample).

    x_adv = x + eps * s(grad_x loss(x, y)),

with s the steepest-ascent direction of the norm: sign(g) for l-inf
(Goodfellow et al. 2015), g / ||g||_2 for l2 (the fast gradient method).
"""
from __future__ import annotations

from .._validate import check_choice
from .base import ATTACK_LOSSES, Attack, AttackContext, expand_like


class FGSM(Attack):
    """One steepest-ascent step of length eps on ``loss`` (see ``attack_loss``)."""

    name = "fgsm"

    def __init__(self, *, norm="linf", loss: str = "auto", seed: int = 0, bounds=None):
        super().__init__(norm=norm, seed=seed, bounds=bounds)
        self.loss = check_choice("loss", loss, ATTACK_LOSSES)

    def _run(self, ctx: AttackContext, x, y, eps):
        # only the direction is used: take it from a gradient that cannot underflow
        _, g, _ = ctx.loss_grad(x, loss=self.loss, direction=True)
        return x + expand_like(eps, x) * self.norm.steepest(g)
