"""Robustness measurement: attacks, per-sample l2 radii with certified brackets, curves."""
from __future__ import annotations

from .base import Attack, AttackContext, AttackResult, attack_loss, margin_from_output
from .fgsm import FGSM
from .minnorm import MinNormL2
from .norms import L2, Linf, Norm, get_norm, l2, linf
from .pgd import PGD, reference_pgd

__all__ = [
    "Attack", "AttackContext", "AttackResult", "attack_loss", "margin_from_output",
    "FGSM", "PGD", "reference_pgd", "MinNormL2",
    "Norm", "L2", "Linf", "get_norm", "l2", "linf",
]
