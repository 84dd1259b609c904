"""Per-sample l2 radius brackets [lower, upper] and the attack that found each upper bound.

For every input x with true minimal adversarial distance rho(x):

    lower(x) <= rho(x) <= upper(x),

upper: the distance of a verified adversarial point (``MinNormL2``, or the best
of several attacks); lower: a certified radius (``lipschitz_lower_bound`` for
two-layer networks, 0 where no certificate applies). Misclassified inputs get
lower = upper = 0 and method 'misclassified'.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .._validate import check_choice
from .base import Attack, check_inputs
from .bounds import lipschitz_lower_bound, supports_lipschitz_bound
from .minnorm import MinNormL2

LOWER_METHODS = ("auto", "lipschitz", "none")


@dataclass
class RadiusResult:
    """Per-sample l2 radius brackets.

    lower, upper (n,): certified and attacked radii (upper = inf if no attack succeeded);
    x_adv: verified adversarial points at distance ``upper``; method: which attack
    found each upper bound; lower_method: 'lipschitz' or 'none';
    n_grad, n_forward: evaluations per sample; seconds: wall time of the whole call.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    x_adv: torch.Tensor
    method: list[str]
    clean_correct: torch.Tensor
    n_grad: torch.Tensor
    n_forward: torch.Tensor
    lower_method: str
    seconds: float
    info: dict = field(default_factory=dict)

    @property
    def bracket(self) -> torch.Tensor:
        """(n, 2) tensor of [lower, upper]."""
        return torch.stack([self.lower, self.upper], dim=1)

    @property
    def gap(self) -> torch.Tensor:
        """Relative width (upper - lower) / upper per sample.

        0 for misclassified points (upper = 0); inf where no attack succeeded (upper =
        inf) and lower is finite, since the bracket is unbounded there (the formula
        would give inf / inf = NaN); 0 where both are inf (nothing left to bracket).
        """
        up, lo = self.upper, self.lower
        ok = torch.isfinite(up) & (up > 0)
        gap = torch.where(ok, (up - lo) / torch.where(ok, up, torch.ones_like(up)),
                          torch.zeros_like(up))
        return torch.where(torch.isinf(up) & torch.isfinite(lo), torch.full_like(up, float("inf")),
                           gap)

    def robust_accuracy(self, eps) -> np.ndarray:
        """Empirical robust accuracy at each eps: mean(upper > eps)."""
        from .curves import accuracy_from_radii

        return accuracy_from_radii(self.upper, eps)

    def certified_accuracy(self, eps) -> np.ndarray:
        """Certified robust accuracy at each eps: mean(lower > eps)."""
        from .curves import accuracy_from_radii

        return accuracy_from_radii(self.lower, eps)


def attack_radius(model, x: torch.Tensor, y, *, attacks: list[Attack] | None = None,
                  lower: str = "auto", seed: int = 0) -> RadiusResult:
    """Bracket the minimal l2 adversarial distance of every input.

    Parameters
    ----------
    model: torch callable returning scores (n,) (labels +-1) or logits (n, C) (int labels).
    x, y: the batch and its labels.
    attacks: minimum-norm l2 attacks to run; the per-sample smallest verified distance
        wins (default ``[MinNormL2(seed=seed)]``).
    lower: 'auto' (the Lipschitz certificate where supported, else 0), 'lipschitz', 'none'.
    """
    t0 = time.perf_counter()
    check_choice("lower", lower, LOWER_METHODS)
    x, y = check_inputs(x, y)
    if attacks is None:
        attacks = [MinNormL2(seed=seed)]
    attacks = list(attacks)
    if not attacks:
        raise ValueError("`attacks` must hold at least one minimum-norm l2 attack, got an empty "
                         "list (pass None for the default [MinNormL2(seed=seed)])")
    for a in attacks:
        if not (isinstance(a, Attack) and a.minimum_norm and a.norm.name == "l2"):
            raise ValueError(f"`attacks` must hold minimum-norm l2 attacks, got {a!r}")
    n = x.shape[0]
    upper = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    x_adv = x.detach().clone()
    method = ["none"] * n
    n_grad = torch.zeros(n, dtype=torch.long, device=x.device)
    n_fwd = torch.zeros_like(n_grad)
    clean = None
    for a in attacks:
        res = a(model, x, y)
        clean = res.clean_correct
        n_grad += res.n_grad
        n_fwd += res.n_forward
        better = res.success & (res.distance < upper)
        upper = torch.where(better, res.distance, upper)
        x_adv[better] = res.x_adv[better]
        sub = res.info.get("method", [a.name] * n)
        for i in torch.nonzero(better).flatten().tolist():
            method[i] = f"{a.name}:{sub[i]}"
    upper = torch.where(clean, upper, torch.zeros_like(upper))
    for i in torch.nonzero(~clean).flatten().tolist():
        method[i] = "misclassified"
    use_lip = lower == "lipschitz" or (lower == "auto" and supports_lipschitz_bound(model))
    if use_lip:
        cap = torch.where(torch.isfinite(upper), upper, 10 * x.reshape(n, -1).norm(dim=1) + 1)
        # (an ideal classifier's certificate runs in float64: report both ends in x's dtype)
        low = lipschitz_lower_bound(model, x, y, r_max=cap).to(upper.dtype)
        low = torch.minimum(low, upper)
    else:
        low = torch.zeros_like(upper)
    return RadiusResult(lower=low, upper=upper, x_adv=x_adv, method=method, clean_correct=clean,
                        n_grad=n_grad, n_forward=n_fwd,
                        lower_method="lipschitz" if use_lip else "none",
                        seconds=time.perf_counter() - t0)
