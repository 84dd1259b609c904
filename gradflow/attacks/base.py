"""The attack skeleton: input checks, radius handling, seeding and success bookkeeping.

Contract for a subclass (the only thing it writes is ``_run``):

1. ``_run(ctx, x, y, eps)`` receives clean inputs ``x`` (n, ...), labels ``y`` and
   per-sample radii ``eps`` (n,) (``None`` for a minimum-norm attack without a
   budget) and returns perturbed inputs of the same shape.
2. It evaluates the model only through ``ctx`` (``ctx.margin``,
   ``ctx.loss_grad``, ``ctx.margin_grad``), which counts forward and gradient
   evaluations per sample and runs on the inputs' device.
3. It draws randomness only from ``ctx.generator`` (seeded from ``seed``), so
   every call with the same seed gives the same result.
4. It does not need to project: ``__call__`` projects the result onto the
   eps-ball (fixed-budget attacks) and onto the input ``bounds``, then decides
   success by a fresh forward pass.

Margins. A binary-margin model returns scores f (n,) with labels y in {-1, +1};
the margin is m = y f. A multi-class model returns logits (n, C) with integer
labels; the margin is m = f_y - max_{c != y} f_c. A point is adversarial when
m < 0 (strictly: a tie is not counted as a success, so every reported
adversarial point is verified).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

import torch

from .._validate import check_int, check_real
from .norms import Norm, get_norm

#: torch generators take seeds in [0, 2^63 - 1]; larger ones fail only at attack time
TORCH_SEED_MAX = 2**63 - 1

ATTACK_LOSSES = ("auto", "exponential", "logistic", "cross_entropy", "margin")


class MarginAsLogits(torch.nn.Module):
    """Two logits [-f/2, f/2] of a margin model f: class 1 iff f > 0, logit gap f.

    Lets logits-based tools (foolbox, AutoAttack, cross-entropy) run on binary-margin
    models; labels map as y in {-1, +1} -> (y + 1) / 2.
    """

    def __init__(self, f: torch.nn.Module):
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.f(x)
        return torch.stack([-f / 2, f / 2], 1)


def margin_from_output(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m = y f for scores (n,); m = f_y - max_{c != y} f_c for logits (n, C)."""
    if f.dim() == 1:
        return y.to(f.dtype) * f
    yl = y.long()
    fy = f.gather(1, yl[:, None])[:, 0]
    other = f.scatter(1, yl[:, None], float("-inf"))
    return fy - other.amax(dim=1)


def attack_loss(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss that an attack ascends (n,).

    exponential exp(-y f), logistic log(1 + exp(-y f)) (binary); cross-entropy
    (logits); margin -m (either kind); 'auto' is exponential for scores and
    cross-entropy for logits.
    """
    from ..losses import torch_loss

    loss = _resolve_loss(f, loss)
    if loss == "margin":
        return -margin_from_output(f, y)
    return torch_loss(f, y, loss, reduction="none")


def _resolve_loss(f: torch.Tensor, loss: str) -> str:
    """'auto' -> the model kind's loss; raises when the loss does not fit the model kind."""
    if loss == "auto":
        return "exponential" if f.dim() == 1 else "cross_entropy"
    if loss != "margin" and (loss == "cross_entropy") != (f.dim() == 2):
        kind = "logits (n, C)" if f.dim() == 2 else "scores (n,)"
        raise ValueError(f"`loss`={loss!r} does not fit a model returning {kind}; "
                         f"use 'margin', 'auto' or the matching loss")
    return loss


def attack_direction_loss(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """A per-sample function whose x-gradient points along that of ``attack_loss``.

    For attacks that use only the gradient's direction (normalised or sign steps).
    Every attack loss is an increasing function of a "soft margin" s, so its gradient is
    a positive per-row multiple of grad s:

        exponential exp(-m), logistic log(1 + exp(-m)), margin -m:  s = -m;
        cross-entropy log(1 + sum_{c != y} exp(f_c - f_y)):  s = logsumexp_{c != y}(f_c - f_y).

    Differentiating s instead of the loss keeps that direction but drops the factor
    l'(s), which underflows on confident points (exp(-m) is 0 in float32 for m > ~104
    and in float64 for m > ~745; softmax probabilities likewise), where it left PGD and
    FGSM with a zero gradient that never moves. The exponential loss's saturation at
    ``EXP_CAP`` (zero gradient beyond it) is dropped too: there s keeps ascending.
    """
    if _resolve_loss(f, loss) != "cross_entropy":
        return -margin_from_output(f, y)
    yl = y.long()
    gap = f - f.gather(1, yl[:, None])
    return gap.scatter(1, yl[:, None], float("-inf")).logsumexp(dim=1)


class AttackContext:
    """Model access for one attack call; counts evaluations per sample.

    ``idx`` arguments select the rows (indices into the full batch) that the
    inputs belong to, so counts stay per sample when an attack works on a subset.
    """

    def __init__(self, model, y: torch.Tensor, n: int, generator: torch.Generator, device):
        self.model = model
        self.y = y
        self.generator = generator
        self.n_grad = torch.zeros(n, dtype=torch.long, device=device)
        self.n_forward = torch.zeros(n, dtype=torch.long, device=device)
        self._all = torch.arange(n, device=device)
        self.info: dict = {}  # per-call diagnostics an attack wants to report

    def _rows(self, idx):
        return self._all if idx is None else idx

    @torch.no_grad()
    def margin(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Margins m(x) of rows ``idx`` (one forward evaluation each)."""
        rows = self._rows(idx)
        self.n_forward[rows] += 1
        return margin_from_output(self.model(x), self.y[rows])

    def loss_grad(self, x: torch.Tensor, idx: torch.Tensor | None = None, loss: str = "auto",
                  direction: bool = False):
        """(loss (n,), d loss / d x, margin (n,)) at x; one gradient evaluation per row.

        direction=True returns, instead of d loss / d x, a positive per-row multiple of it
        that does not underflow (the gradient of ``attack_direction_loss``), for callers
        that use only its direction.
        """
        rows = self._rows(idx)
        self.n_grad[rows] += 1
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            f = self.model(xg)
            ell = attack_loss(f, self.y[rows], loss)
            obj = attack_direction_loss(f, self.y[rows], loss) if direction else ell
            (g,) = torch.autograd.grad(obj.sum(), xg)
        with torch.no_grad():
            m = margin_from_output(f.detach(), self.y[rows])
        return ell.detach(), g.detach(), m

    def margin_grad(self, x: torch.Tensor, idx: torch.Tensor | None = None):
        """(margin m (n,), dm/dx) at x; one gradient evaluation per row."""
        ell, g, m = self.loss_grad(x, idx, loss="margin")
        return m, -g


@dataclass
class AttackResult:
    """Outcome of one attack call (all tensors have one entry per sample).

    x_adv:     the returned points (the clean point where the attack failed to move);
    success:   m(x_adv) < 0, checked by a fresh forward pass (verified adversarial);
    distance:  ||x_adv - x|| in the attack's norm;
    eps:       the budget (fixed-budget attacks) or None;
    n_grad, n_forward: gradient and forward evaluations spent on each sample;
    clean_correct: m(x) > 0.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    margin: torch.Tensor
    clean_correct: torch.Tensor
    n_grad: torch.Tensor
    n_forward: torch.Tensor
    eps: torch.Tensor | None
    norm: str
    attack: str
    info: dict = field(default_factory=dict)

    @property
    def robust(self) -> torch.Tensor:
        """Correct on the clean point and not broken by the attack."""
        return self.clean_correct & ~self.success

    def robust_accuracy(self) -> float:
        return float(self.robust.double().mean())


def check_inputs(x, y):
    """Check the batch and labels; returns (x, y) with y a tensor on x's device."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"`x` must be a torch tensor of shape (n, ...), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"`x` must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError("`x` must hold at least one point, got an empty batch")
    if not bool(torch.isfinite(x).all()):
        # a NaN row would pass the bounds check and be counted as misclassified
        raise ValueError("`x` must be finite; it holds NaN or inf")
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, device=x.device)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"`y` must have shape ({x.shape[0]},) to match `x`, got {tuple(y.shape)}")
    return x, y.to(x.device)


def check_bounds(bounds) -> tuple[float, float] | None:
    """None, or the input box (lo, hi) as two finite floats with lo < hi."""
    if bounds is None:
        return None
    msg = ("`bounds` must be None or a pair (lo, hi) of finite real numbers with lo < hi, "
           f"got {bounds!r}")
    try:
        lo, hi = bounds
        lo, hi = check_real("bounds[0]", lo), check_real("bounds[1]", hi)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if not lo < hi:
        raise ValueError(msg)
    return lo, hi


BOUNDS_ULPS = 8


def check_in_bounds(x: torch.Tensor, bounds: tuple[float, float] | None) -> None:
    """Raise unless every entry of x lies in [lo, hi].

    Tolerance: ``BOUNDS_ULPS`` (8) units of x's dtype at the box scale max(|lo|, |hi|, 1),
    so inputs that only rounding put outside (e.g. a normalisation in float32) pass; an
    attack clips relative to x (``Attack._clip``), so they cannot push a point outside eps.
    """
    if bounds is None or x.numel() == 0:
        return
    lo, hi = bounds
    tol = BOUNDS_ULPS * torch.finfo(x.dtype).eps * max(abs(lo), abs(hi), 1.0)
    xmin, xmax = float(x.min()), float(x.max())
    if xmin < lo - tol or xmax > hi + tol:
        raise ValueError(f"`x` must lie inside `bounds` [{lo:g}, {hi:g}] (up to {tol:.1e} of "
                         f"round-off), got values in [{xmin:g}, {xmax:g}]")


def clip_to_box(z: torch.Tensor, bounds: tuple[float, float] | None,
                x0: torch.Tensor | None = None) -> torch.Tensor:
    """z clipped to ``bounds`` (None: unchanged); with x0, to the box widened to contain x0.

    The widening only matters for inputs within round-off outside the box (see
    ``check_in_bounds``): clipping then never moves a coordinate farther from x0, so a
    perturbation already projected onto the eps-ball around x0 stays inside it.
    """
    if bounds is None:
        return z
    lo, hi = bounds
    if x0 is None:
        return z.clamp(lo, hi)
    return torch.minimum(torch.maximum(z, x0.clamp(max=lo)), x0.clamp(min=hi))


def check_eps(eps, n: int, x: torch.Tensor) -> torch.Tensor:
    """Radius as a (n,) tensor; raises on negative, non-finite or mis-shaped input."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.dim() == 0:
        e = e.expand(n).clone()
    if e.dim() != 1 or e.shape[0] != n:
        raise ValueError(f"`eps` must be a scalar or have shape ({n},), got {tuple(e.shape)}")
    if not torch.all(torch.isfinite(e)) or torch.any(e < 0):
        raise ValueError(f"`eps` must be finite and >= 0, got min {float(e.min()):g}")
    return e


def check_labels(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Labels must be +-1 for scores (n,) and integers in [0, C) for logits (n, C)."""
    if f.dim() == 1:
        if not torch.all((y == 1) | (y == -1)):
            raise ValueError("`y` must hold labels in {-1, +1} for a model returning scores (n,)")
        return y.to(f.dtype)
    if f.dim() != 2:
        raise ValueError(f"`model` must return scores (n,) or logits (n, C), got shape "
                         f"{tuple(f.shape)}")
    C = f.shape[1]
    if torch.is_floating_point(y) and not torch.all(y == y.round()):
        raise ValueError("`y` must hold integer class labels for a model returning logits")
    yl = y.long()
    if torch.any(yl < 0) or torch.any(yl >= C):
        raise ValueError(f"`y` must hold class labels in [0, {C - 1}] for a model with {C} logits")
    return yl


class Attack:
    """Base class of all attacks (see the module docstring for the subclass contract).

    Parameters (keyword-only): ``norm`` 'l2' or 'linf' (or a ``Norm``);
    ``seed`` (int >= 0) seeds every random draw; ``bounds`` optional (lo, hi)
    box for valid inputs (e.g. (0, 1) for images); the clean inputs must lie in it.
    """

    name = "attack"
    minimum_norm = False  # True: finds its own radius per sample, eps is an optional cap
    norms: tuple[str, ...] = ("l2", "linf")

    def __init__(self, *, norm: str | Norm = "l2", seed: int = 0,
                 bounds: tuple[float, float] | None = None):
        self.norm = get_norm(norm)
        if self.norm.name not in self.norms:
            raise ValueError(f"`norm` must be one of {self.norms} for {type(self).__name__}, "
                             f"got {self.norm.name!r}")
        self.seed = check_int("seed", seed, 0, TORCH_SEED_MAX)
        self.bounds = check_bounds(bounds)

    def _clip(self, z: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        return clip_to_box(z, self.bounds, x0)

    @final
    def __call__(self, model, x: torch.Tensor, y, eps=None) -> AttackResult:
        """Attack ``model`` at the batch ``x`` with labels ``y`` and budget ``eps``."""
        x, y = check_inputs(x, y)
        check_in_bounds(x, self.bounds)
        n = x.shape[0]
        if eps is None:
            if not self.minimum_norm:
                raise ValueError(f"`eps` is required for the fixed-budget attack {self.name}")
            e = None
        else:
            e = check_eps(eps, n, x)
        x = x.detach()
        with torch.no_grad():
            f0 = model(x)
        y = check_labels(f0, y)
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        ctx = AttackContext(model, y, n, gen, x.device)
        m0 = margin_from_output(f0, y)
        ctx.n_forward += 1
        with torch.no_grad():
            x_adv = self._run(ctx, x, y, e).detach()
            if x_adv.shape != x.shape:
                raise RuntimeError(f"{type(self).__name__}._run returned shape {tuple(x_adv.shape)}"
                                   f" for inputs of shape {tuple(x.shape)}")
            d = x_adv - x
            if e is not None:
                d = self.norm.project(d, e)
            x_adv = self._clip(x + d, x)
            m = ctx.margin(x_adv)
            success = m < 0
            # a failed attack reports the clean point, so distances mean something
            x_adv = torch.where(success.reshape((n,) + (1,) * (x.dim() - 1)), x_adv, x)
            dist = self.norm.of(x_adv - x)
        return AttackResult(x_adv=x_adv, success=success, distance=dist, margin=m,
                            clean_correct=m0 > 0, n_grad=ctx.n_grad, n_forward=ctx.n_forward,
                            eps=e, norm=self.norm.name, attack=self.name,
                            info=ctx.info)

    def _run(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor,
             eps: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample (n,) tensor reshaped to broadcast against x (n, ...)."""
    return v.reshape((v.shape[0],) + (1,) * (x.dim() - 1))
