"""Robustness measurement: attacks, per-sample l2 radii with certified brackets, curves."""
from __future__ import annotations

from .base import (
    Attack,
    AttackContext,
    AttackResult,
    MarginAsLogits,
    attack_loss,
    margin_from_output,
)
from .bounds import lipschitz_lower_bound
from .curves import RobustCurve, accuracy_from_radii, robust_accuracy_curve
from .fgsm import FGSM
from .masking import GradientMaskingWarning, MaskingReport, RaySearchL2, check_gradient_masking
from .minnorm import MinNormL2
from .norms import L2, Linf, Norm, get_norm, l2, linf
from .pgd import PGD, reference_pgd
from .radius import RadiusResult, attack_radius
from .training import PerturbHook, fgsm_hook, pgd_hook, smooth_surrogate

__all__ = [
    "Attack", "AttackContext", "AttackResult", "MarginAsLogits", "attack_loss",
    "margin_from_output",
    "FGSM", "PGD", "reference_pgd", "MinNormL2",
    "Norm", "L2", "Linf", "get_norm", "l2", "linf",
    "RadiusResult", "attack_radius", "lipschitz_lower_bound",
    "RobustCurve", "accuracy_from_radii", "robust_accuracy_curve",
    "GradientMaskingWarning", "MaskingReport", "RaySearchL2", "check_gradient_masking",
    "PerturbHook", "fgsm_hook", "pgd_hook", "smooth_surrogate",
]
