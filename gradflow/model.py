"""The two-layer network in numpy, with exact hand-derived gradients.

    f(x) = sum_j v_j sigma(x; w_j) (+ b),
    sigma(x; w) = phi(<w, x - c>) / ||w||^q / ||x - c||^r,

where q = activation.w_power (p-1 for pReLU), r = q when input normalisation is
on (else 0), and c is the optional input centre. The gradient is the right-hand
side of the gradient flow, so it is fully vectorised: two GEMMs (X W^T and
A^T X) plus elementwise work, no loops over neurons or samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_array
from .config import ModelConfig
from .losses import check_loss, mean_loss_and_dlogits


@dataclass
class TwoLayerParams:
    """Parameters of a two-layer net. W: (h, D); v: (h,) or (h, C); b: () or (C,)."""

    W: np.ndarray
    v: np.ndarray
    b: np.ndarray | None = None
    center: np.ndarray | None = None

    def __post_init__(self):
        self.W = check_array("W", self.W, ndim=2)
        self.v = check_array("v", self.v)
        if self.v.ndim not in (1, 2) or self.v.shape[0] != self.W.shape[0]:
            raise ValueError(
                f"`v` must have shape (h,) or (h, C) with h={self.W.shape[0]}, got {self.v.shape}"
            )
        if self.b is not None:
            self.b = np.asarray(self.b, dtype=self.W.dtype)
            want = () if self.v.ndim == 1 else (self.v.shape[1],)
            if self.b.shape != want:
                raise ValueError(f"`b` must have shape {want}, got {self.b.shape}")
        if self.center is not None:
            self.center = check_array("center", self.center, ndim=1)
            if self.center.shape[0] != self.W.shape[1]:
                raise ValueError(
                    f"`center` must have length D={self.W.shape[1]}, got {self.center.shape[0]}"
                )

    @property
    def width(self) -> int:
        return self.W.shape[0]

    @property
    def dim(self) -> int:
        return self.W.shape[1]

    def copy(self) -> TwoLayerParams:
        return TwoLayerParams(
            self.W.copy(),
            self.v.copy(),
            None if self.b is None else self.b.copy(),
            None if self.center is None else self.center.copy(),
        )

    def invariant(self) -> np.ndarray:
        """Per-neuron v_j^2 - ||w_j||^2 (||v_j||^2 for vector outputs): conserved by the flow
        when sigma is 1-homogeneous in w (pReLU, ReLU); relu_p conserves p v_j^2 - ||w_j||^2."""
        return output_sq_norms(self.v) - np.sum(self.W**2, axis=1)


def output_sq_norms(v: np.ndarray) -> np.ndarray:
    """Per-neuron ||v_j||^2 of output weights v, shape (h,) (scalar) or (h, C) (vector outputs)."""
    return v**2 if v.ndim == 1 else np.sum(v**2, axis=1)


def _prepare(params: TwoLayerParams, X: np.ndarray, cfg: ModelConfig):
    act = cfg.activation_obj()
    X = np.asarray(X, dtype=params.W.dtype)
    if X.ndim != 2 or X.shape[1] != params.dim:
        raise ValueError(f"`X` must have shape (n, {params.dim}), got {X.shape}")
    if cfg.center_input and params.center is not None:
        X = X - params.center
    q = act.w_power
    r = q if cfg.normalize_input else 0.0
    return act, X, q, r


def _wscale(W, q):
    """||w_j||^-q per neuron, or None when q = 0."""
    return None if q == 0 else np.sum(W * W, axis=1) ** (-0.5 * q)


def _xscale(X, r):
    """||x_i||^-r per sample, or None when r = 0."""
    return None if r == 0 else np.sum(X * X, axis=1) ** (-0.5 * r)


def _apply_scales(M, wscale, xscale, inplace=False):
    if wscale is not None:
        M = M.__imul__(wscale) if inplace else M * wscale
        inplace = True
    if xscale is not None:
        M = M.__imul__(xscale[:, None]) if inplace else M * xscale[:, None]
    return M


def hidden(params: TwoLayerParams, X: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Hidden features S_ij = sigma(x_i; w_j), shape (n, h)."""
    act, X, q, r = _prepare(params, X, cfg)
    wscale, xscale = _wscale(params.W, q), _xscale(X, r)
    return _apply_scales(act.phi(X @ params.W.T), wscale, xscale)


def forward(params: TwoLayerParams, X: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Network output f(X): shape (n,) for one output, (n, C) for logits."""
    f = hidden(params, X, cfg) @ params.v
    if cfg.bias and params.b is not None:
        f = f + params.b
    return f


def loss(params: TwoLayerParams, X, y, cfg: ModelConfig, loss: str = "exponential") -> float:
    """Mean training loss (1/n) sum_i l(y_i f(x_i)) (or cross-entropy)."""
    check_loss(loss, cfg.n_outputs)
    value, _ = mean_loss_and_dlogits(forward(params, X, cfg), np.asarray(y), loss)
    return value


def loss_and_grad(
    params: TwoLayerParams, X, y, cfg: ModelConfig, loss: str = "exponential"
) -> tuple[float, TwoLayerParams]:
    """Mean loss and its exact gradient with respect to (W, v, b).

    With g = dL/df (n,) or (n, C), H_ij = (g v^T)_ij, and S the hidden features:
      dL/dv   = S^T g
      dL/dW_j = sum_i H_ij phi'(z_ij) s_ij x_i  -  q (v_j . dL/dv_j) w_j / ||w_j||^2
    where s_ij = ||w_j||^-q ||x_i||^-r. The second term comes from
    differentiating ||w||^-q. The centre is not trained (its gradient is zero).
    For one output, H = g v^T and the first term is v_j ||w_j||^-q [phi'(Z)^T (g ||x||^-r X)]_j.
    """
    check_loss(loss, cfg.n_outputs)
    act, Xc, q, r = _prepare(params, X, cfg)
    xscale = _xscale(Xc, r)
    Phi, dPhi = act.both(Xc @ params.W.T)
    b = params.b if cfg.bias else None
    y = np.asarray(y)
    value, _, g, grad_W, grad_v = gradient_from_features(
        Xc, params.W, params.v, b, Phi, dPhi, q, xscale,
        lambda f: mean_loss_and_dlogits(f, y, loss))
    grad_b = g.sum(axis=0) if b is not None else None
    return value, TwoLayerParams(grad_W, grad_v, grad_b, None)


def gradient_from_features(Xc, W, v, b, Phi, dPhi, q: float, xscale, dlogits):
    """The gradient of ``loss_and_grad`` given phi(Z) and phi'(Z), Z = Xc W^T.

    Shared by ``loss_and_grad`` and the ODE engine's Cartesian field, which freezes the
    ReLU pattern by passing its own (Phi, dPhi) and checks for overflow in ``dlogits``.
    Xc: centred inputs; b: output bias or None; q: the ||w||-power; xscale: ||x||^-r or
    None; dlogits(f) -> (mean loss, dL/df). Phi and dPhi are consumed (scaled in place).
    Returns (loss, f, g = dL/df, grad_W, grad_v).
    """
    wscale = _wscale(W, q)
    S = _apply_scales(Phi, wscale, xscale, inplace=True)
    f = S @ v
    if b is not None:
        f = f + b
    value, g = dlogits(f)
    grad_v = S.T @ g
    if v.ndim == 1:
        # H = g v^T is rank one, so fold g (and the x-scale) into X and v (and the w-scale)
        # into the result: one pass over the (n, D) array instead of two over the (n, h) one.
        gx = g if xscale is None else g * xscale
        row = v if wscale is None else v * wscale
        grad_W = (dPhi.T @ (gx[:, None] * Xc)) * row[:, None]
    else:
        dPhi *= g @ v.T
        grad_W = _apply_scales(dPhi, wscale, xscale, inplace=True).T @ Xc
    if q != 0:
        coef = grad_v * v if v.ndim == 1 else np.sum(grad_v * v, axis=1)
        grad_W -= (q * coef / np.sum(W * W, axis=1))[:, None] * W
    return value, f, g, grad_W, grad_v
