"""Stable losses on margins (binary) or logits (multi-class), numpy and torch.

Binary losses act on the margin z = y f(x) with y in {-1, +1}:
  exponential  l(z) = exp(-z)
  logistic     l(z) = log(1 + exp(-z))
Multi-class: cross-entropy on logits with integer labels.

The exponential loss genuinely overflows for z < -709 (float64). To keep values
and gradients finite we saturate the exponent at ``EXP_CAP`` (700 in float64,
80 in float32): l(z) = exp(min(-z, cap)). Margins that negative never occur
in a sane run; the ODE engine stops with an overflow status long before.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit, log_softmax, softmax

from ._validate import check_choice

BINARY_LOSSES = ("exponential", "logistic")
LOSSES = BINARY_LOSSES + ("cross_entropy",)


def exp_cap(dtype) -> float:
    """Largest exponent we allow in exp(.) for ``dtype`` (keeps a factor ~1e4 of headroom)."""
    if isinstance(dtype, torch.dtype):
        return float(np.log(torch.finfo(dtype).max)) - 9.0
    return float(np.log(np.finfo(np.result_type(dtype, np.float32)).max)) - 9.0


def check_loss(loss: str, n_outputs: int) -> str:
    check_choice("loss", loss, LOSSES)
    if n_outputs == 1 and loss == "cross_entropy":
        raise ValueError("`loss`='cross_entropy' needs `n_outputs` >= 2 (logits); use "
                         "'exponential' or 'logistic' for a single margin output")
    if n_outputs >= 2 and loss != "cross_entropy":
        raise ValueError(f"`loss`={loss!r} needs `n_outputs`=1; use 'cross_entropy' for logits")
    return loss


def margin_loss(z: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise l(z) and l'(z) for a binary margin loss (numpy)."""
    if loss == "exponential":
        e = np.exp(np.minimum(-z, exp_cap(z.dtype)))
        return e, -e
    if loss == "logistic":
        return np.logaddexp(0.0, -z), -expit(-z)
    raise ValueError(f"`loss` must be one of {BINARY_LOSSES}, got {loss!r}")


def mean_loss_and_dlogits(f: np.ndarray, y: np.ndarray, loss: str, *,
                          labels_checked: bool = False) -> tuple[float, np.ndarray]:
    """Mean loss over samples and its gradient with respect to the outputs f.

    f has shape (n,) for margin losses (y in {-1,+1}) or (n, C) for
    cross-entropy (y integer class labels). ``labels_checked=True`` skips the label
    check (``check_labels``) for callers that ran it once for fixed labels (the ODE
    field evaluates this with the same y at every stage).
    """
    n = f.shape[0]
    if not labels_checked:
        check_labels(y, n, f.shape[1] if f.ndim == 2 else 1, loss)
    if loss == "cross_entropy":
        yi = np.asarray(y, dtype=np.int64)
        logp = log_softmax(f, axis=1)
        value = -logp[np.arange(n), yi].mean()
        g = softmax(f, axis=1)
        g[np.arange(n), yi] -= 1.0
        return float(value), g / n
    z = y * f
    lz, dlz = margin_loss(z, loss)
    # sum of lz / n, not lz.mean(): capped exponential terms near e^cap overflow when summed
    return float(np.sum(lz / n)), y * dlz / n


def check_labels(y, n: int, n_outputs: int, loss: str) -> None:
    """Labels that fit n outputs: +-1 of shape (n,), or integer classes in [0, n_outputs)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"`y` must have shape ({n},) like the outputs, got {y.shape}")
    if loss == "cross_entropy":
        C = n_outputs
        if not (np.all(y == np.round(y)) and np.all((y >= 0) & (y < C))):
            raise ValueError(f"`y` must hold integer class labels in [0, {C - 1}] for "
                             "cross_entropy")
    elif not np.all(np.abs(y) == 1):
        raise ValueError(f"`y` must hold labels -1 and +1 for the {loss} loss")


def torch_loss(f: torch.Tensor, y: torch.Tensor, loss: str, reduction: str = "mean") -> torch.Tensor:
    """The same losses in torch (autograd-friendly). reduction: 'mean' | 'none'.

    f: (n,) outputs for the binary losses, (n, C) logits for cross_entropy; y: (n,)."""
    if loss == "cross_entropy":
        if f.dim() != 2 or y.shape != f.shape[:1]:
            raise ValueError(f"cross_entropy needs model outputs `f` of shape (n, C) for labels "
                             f"`y` of shape (n,), got {tuple(f.shape)} and {tuple(y.shape)}")
        return torch.nn.functional.cross_entropy(f, y.long(), reduction=reduction)
    if f.shape != y.shape:  # (n, 1) * (n,) would broadcast to (n, n) and train on nonsense
        raise ValueError(f"the {loss} loss needs model outputs `f` of the labels' shape (n,), "
                         f"got {tuple(f.shape)} for `y` of shape {tuple(y.shape)} (squeeze a "
                         "single-output model's last dimension)")
    z = y.to(f.dtype) * f
    if loss == "exponential":
        out = torch.exp(torch.clamp(-z, max=exp_cap(f.dtype)))
    elif loss == "logistic":
        out = torch.nn.functional.softplus(-z)
    else:
        raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}")
    # (out / n).sum() rather than out.mean(): capped exponential terms overflow a plain sum
    return (out / out.numel()).sum() if reduction == "mean" else out
