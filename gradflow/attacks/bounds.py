"""Certified lower bounds on the l2 radius of two-layer networks (local Lipschitz).

For f(z) = sum_j v_j phi(<w_j, z - c>) / ||w_j||^q (+ b) and the margin
m = y f (binary) or m_c = f_y - f_c (each other class c), on the ball
B(x, R) every pre-activation lies in [a_j - ||w_j|| R, a_j + ||w_j|| R], so the
gradient grad f(z) = sum_j c_j w_j has coefficients
c_j = v_j phi'(.) / ||w_j||^q in a box [mid_j - rad_j, mid_j + rad_j]. Then

    sup_{z in B} ||grad f(z)||^2 <= mid^T G mid + 2 sum_j rad_j |(G mid)_j| + rad^T |G| rad,

G = W W^T (expand c = mid + e, |e_j| <= rad_j), and also
sup ||grad f|| <= ||W^T mid|| + sum_j rad_j ||w_j||; L(R) is the smaller of the two.
By the mean-value theorem m(x + d) >= m(x) - L(R) ||d|| for ||d|| <= R, so
r(R) = min(R, m(x) / L(R)) is a certified radius for every R; since L grows
with R, the best R solves R = m(x) / L(R), found by bisection on [0, R_max].
At a subclass centre of the ideal ReLU classifier F the bound is exact
(1/sqrt(K)) because mu_+ and mu_- are orthogonal.

Supported: ``TwoLayerNet`` without input normalisation (and the ideal
classifiers F, F_p of ``gradflow.theory``, converted exactly), with any registered
activation (phi' bounds on intervals are exact for the monotone-derivative
ones, global constants for SiLU/GELU).
"""
from __future__ import annotations

import numpy as np
import torch

from .._validate import check_int
from ..torch_model import TwoLayerNet
from .base import check_inputs, check_labels

# global bounds of phi' for activations whose derivative is not monotone (computed on a
# fine grid, rounded outwards)
_GLOBAL_DPHI = {"silu": (-0.09984, 1.09984), "gelu": (-0.12891, 1.12891)}


def as_two_layer(model):
    """``model`` as a TwoLayerNet when it is one, or an ideal classifier F / F_p
    (F = relu(<x, mu_+>) - relu(<x, mu_->); F_p = sum_k y_k relu(<x, mu_k>)^p); else None."""
    if isinstance(model, TwoLayerNet):
        return None if model.cfg.normalize_input else model
    from ..theory.classifiers import IdealClassifier

    if not isinstance(model, IdealClassifier) or model.kind not in ("F", "Fp"):
        return None
    from ..config import ModelConfig

    if model.kind == "F":
        W = torch.as_tensor(np.stack([model.mu_plus, model.mu_minus]))
        v = torch.tensor([1.0, -1.0], dtype=torch.float64)
        cfg = ModelConfig(width=2, activation="relu")
    else:
        W = torch.as_tensor(model.centres, dtype=torch.float64)
        v = torch.as_tensor(model.labels, dtype=torch.float64)
        cfg = ModelConfig(width=model.K, activation="relu_p", p=float(model.p))
    net = TwoLayerNet(cfg, model.D, dtype=torch.float64)
    with torch.no_grad():
        net.W.copy_(W)
        net.v.copy_(v)
    return net


def supports_lipschitz_bound(model) -> bool:
    """Whether ``lipschitz_lower_bound`` can certify ``model``."""
    return as_two_layer(model) is not None


def dphi_interval(act, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds [dmin, dmax] of phi' over pre-activations in [lo, hi] (elementwise)."""
    name, prm = act.name, act.params
    one, zero = torch.ones_like(lo), torch.zeros_like(lo)
    if name in ("relu", "relu_softplus_grad") or (name in ("prelu", "relu_p") and prm["p"] == 1):
        return torch.where(lo > 0, one, zero), torch.where(hi > 0, one, zero)
    if name in ("prelu", "relu_p"):
        p = prm["p"]
        return p * torch.relu(lo) ** (p - 1), p * torch.relu(hi) ** (p - 1)
    if name == "capped_relu":
        beta = prm["beta"]
        dmax = torch.where((hi > 0) & (lo < beta), one, zero)
        dmin = torch.where((lo > 0) & (hi < beta), one, zero)
        return dmin, dmax
    if name == "softplus":
        return torch.sigmoid(lo), torch.sigmoid(hi)
    if name == "param_softplus":
        a = prm["a"]
        return torch.sigmoid(a * lo), torch.sigmoid(a * hi)
    if name == "elu":  # phi' = exp(min(z, 0)) is nondecreasing
        return torch.exp(torch.clamp(lo, max=0)), torch.exp(torch.clamp(hi, max=0))
    if name == "tanh":
        dl, dh = 1 - torch.tanh(lo) ** 2, 1 - torch.tanh(hi) ** 2
        straddle = (lo < 0) & (hi > 0)
        return torch.minimum(dl, dh), torch.where(straddle, one, torch.maximum(dl, dh))
    if name in _GLOBAL_DPHI:
        a, b = _GLOBAL_DPHI[name]
        return a * one, b * one
    raise ValueError(f"`model` activation {act.spec!r} has no derivative bound; "
                     f"register one in gradflow.attacks.bounds")


class _TwoLayerCert:
    """Precomputed quantities of one TwoLayerNet for the Lipschitz certificate."""

    def __init__(self, net: TwoLayerNet):
        W = net.W.detach()
        self.W = W
        self.wn = torch.linalg.vector_norm(W, dim=1)
        self.scale = self.wn.clamp_min(1e-300).pow(-net.q) if net.q != 0 else torch.ones_like(
            self.wn)
        self.G = W @ W.T
        self.Gabs = self.G.abs()
        self.V = net.v.detach()
        self.center = None if net.center is None else net.center.detach()
        self.act = net.act

    def preact(self, x):
        xc = x if self.center is None else x - self.center
        return xc @ self.W.T

    def lipschitz(self, a: torch.Tensor, R: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Upper bound of sup_{||d|| <= R} ||grad (sum_j v_j sigma_j)(x + d)||, per row.

        a: pre-activations at x (n, h); R: radii (n,); v: output weights (n, h) or (h,).
        """
        rw = R[:, None] * self.wn[None, :]
        dmin, dmax = dphi_interval(self.act, a - rw, a + rw)
        coef = v * self.scale
        c1, c2 = coef * dmin, coef * dmax
        lo, hi = torch.minimum(c1, c2), torch.maximum(c1, c2)
        mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
        Gmid = mid @ self.G
        quad = (mid * Gmid).sum(1) + 2 * (rad * Gmid.abs()).sum(1) + (rad * (rad @ self.Gabs)).sum(1)
        gram = quad.clamp_min(0).sqrt()
        tri = (mid @ self.W).norm(dim=1) + (rad * self.wn).sum(1)
        return torch.minimum(gram, tri)


@torch.no_grad()
def lipschitz_lower_bound(net, x: torch.Tensor, y: torch.Tensor,
                          r_max: torch.Tensor | None = None, iters: int = 30) -> torch.Tensor:
    """Certified l2 radius per sample: no d with ||d|| < r changes the predicted class.

    Returns 0 where x is misclassified (m(x) <= 0). ``r_max`` (scalar or (n,), finite,
    >= 0) caps the search (e.g. an attack's upper bound; default 10 ||x|| + 1); ``iters``
    (int >= 1) bisection steps. Labels: +-1 for scores, integers in [0, C) for logits.
    """
    model, net = net, as_two_layer(net)
    if net is None:
        raise ValueError("`model` must be a TwoLayerNet without input normalisation or an ideal "
                         "classifier F / F_p for the Lipschitz certificate")
    iters = check_int("iters", iters, 1)
    x, y = check_inputs(x, y)
    if net is not model:  # an ideal classifier converted on the CPU: follow the data's device
        net = net.to(x.device)
    x = x.reshape(x.shape[0], -1).to(net.W.dtype)
    n = x.shape[0]
    cert = _TwoLayerCert(net)
    a = cert.preact(x)
    f = net(x)
    y = check_labels(f, y)
    if f.dim() == 1:
        margins = [(y.to(f.dtype) * f, y.to(f.dtype)[:, None] * cert.V[None, :])]
    else:
        yl = y.long()
        Vy = cert.V[:, yl].T  # (n, h)
        margins = []
        for c in range(f.shape[1]):
            mc = f.gather(1, yl[:, None])[:, 0] - f[:, c]
            mc = torch.where(yl == c, torch.full_like(mc, float("inf")), mc)
            margins.append((mc, Vy - cert.V[:, c][None, :]))
    if r_max is None:
        r_max = 10 * x.norm(dim=1) + 1
    r_max = torch.as_tensor(r_max, dtype=x.dtype, device=x.device)
    if r_max.dim() == 0:
        r_max = r_max.expand(n)
    if r_max.shape != (n,):
        raise ValueError(f"`r_max` must be a scalar or have shape ({n},), got "
                         f"{tuple(r_max.shape)}")
    if not torch.all(torch.isfinite(r_max) & (r_max >= 0)):
        raise ValueError("`r_max` must be finite and >= 0")
    r_max = r_max.clone()
    best = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    for m, v in margins:
        finite = torch.isfinite(m)
        lo = torch.zeros(n, dtype=x.dtype, device=x.device)
        hi = torch.where(finite, r_max, torch.zeros_like(r_max))
        cert_r = torch.zeros_like(lo)
        for _ in range(iters):
            R = 0.5 * (lo + hi)
            L = cert.lipschitz(a, R, v)
            rR = torch.minimum(R, m.clamp_min(0) / L.clamp_min(1e-300))
            cert_r = torch.maximum(cert_r, rR)
            ok = m / L.clamp_min(1e-300) >= R
            lo = torch.where(ok, R, lo)
            hi = torch.where(ok, hi, R)
        # the cap itself may be certified
        L = cert.lipschitz(a, hi, v)
        cert_r = torch.maximum(cert_r, torch.minimum(hi, m.clamp_min(0) / L.clamp_min(1e-300)))
        cert_r = torch.where(finite, cert_r, torch.full_like(cert_r, float("inf")))
        best = torch.minimum(best, cert_r)
    m_all = torch.stack([m for m, _ in margins]).amin(0)
    return torch.where(m_all > 0, best, torch.zeros_like(best))
