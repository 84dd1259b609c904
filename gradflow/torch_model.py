"""The two-layer network as a torch ``nn.Module`` with the numpy model's semantics.

Also converts parameters both ways and reads/writes the reference
implementation's MNIST checkpoint format (THEORY.md section 7):
``center`` [1, D], ``prelulayer.W`` [D, h] (columns are neurons),
``output_net.weight`` [C, h], ``output_net.bias`` [C]; input normalisation on.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .model import TwoLayerParams


def norm_divided(phi, z: torch.Tensor, wn: torch.Tensor, q, homogeneous: bool) -> torch.Tensor:
    """phi(z) / ||w||^q for pre-activations z and neuron norms wn (broadcast against z).

    When sigma is 1-homogeneous in w, phi is (q+1)-homogeneous (pReLU: relu^p, q = p - 1)
    and this equals ||w|| phi(z/||w||), the form used then: autograd of ||w||^-q =
    (||w||^2)^(-q/2) needs (||w||^2)^(-q/2-1), which overflows float32 from a tiny init
    (eps 1e-12 at p=3, 1e-7 at p=6) and turns the gradient into inf * 0 = NaN, and relu(z)^p
    itself underflows float32 there (2e-44 at p = 6, eps 1e-7). Any other phi with a norm
    division is evaluated as defined.
    """
    return phi(z / wn) * wn if homogeneous else phi(z) * wn.pow(-q)


class TwoLayerNet(nn.Module):
    """f(x) = sum_j v_j sigma(x; w_j) (+ b), sigma(x; w) = phi(<w, x-c>)/||w||^q/||x-c||^r.

    Parameters: ``W`` (h, D), ``v`` (h,) or (h, C), optional ``b``; buffer
    ``center`` (D,) when ``cfg.center_input``. Output shape (n,) or (n, C).
    """

    def __init__(self, cfg: ModelConfig, D: int, dtype=torch.float64, device=None):
        super().__init__()
        if isinstance(D, bool) or not isinstance(D, int) or D < 1:
            raise ValueError(f"`D` must be a positive integer, got {D!r}")
        self.cfg = cfg
        self.act = cfg.activation_obj()
        h, C = cfg.width, cfg.n_outputs
        kw = dict(dtype=dtype, device=device)
        # Kaiming-uniform-like default; small-init studies overwrite via load_params.
        bound = 1.0 / math.sqrt(D)
        self.W = nn.Parameter(torch.empty(h, D, **kw).uniform_(-bound, bound))
        vshape = (h,) if C == 1 else (h, C)
        self.v = nn.Parameter(torch.empty(vshape, **kw).uniform_(-1 / math.sqrt(h), 1 / math.sqrt(h)))
        self.b = nn.Parameter(torch.zeros(() if C == 1 else (C,), **kw)) if cfg.bias else None
        self.register_buffer("center", torch.zeros(D, **kw) if cfg.center_input else None)

    @property
    def q(self) -> float:
        return self.act.w_power

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.W.shape[1]:
            raise ValueError(f"`x` must have {self.W.shape[1]} features, got {x.shape[1]}")
        if self.center is not None:
            x = x - self.center
        return x

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden features sigma(x_i; w_j), shape (n, h)."""
        x = self._inputs(x)
        q = self.q
        if q == 0:
            S = self.act.torch_fn(x @ self.W.T)
        else:
            wn = torch.linalg.vector_norm(self.W, dim=1)
            S = norm_divided(self.act.torch_fn, x @ self.W.T, wn, q,
                             self.act.homogeneity == 1.0)
            if self.cfg.normalize_input:
                S = S * x.pow(2).sum(dim=1, keepdim=True).pow(-0.5 * q)
        return S

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.hidden(x) @ self.v
        if self.b is not None:
            f = f + self.b
        return f

    # -- conversion -----------------------------------------------------------------
    @torch.no_grad()
    def load_params(self, params: TwoLayerParams) -> TwoLayerNet:
        """Copy numpy parameters into this module (shapes must match)."""
        self.W.copy_(torch.as_tensor(params.W))
        self.v.copy_(torch.as_tensor(params.v))
        if self.b is not None:
            self.b.copy_(torch.as_tensor(params.b if params.b is not None else 0.0))
        if self.center is not None and params.center is not None:
            self.center.copy_(torch.as_tensor(params.center))
        return self

    def to_params(self) -> TwoLayerParams:
        """The parameters as a float64 numpy ``TwoLayerParams``."""
        def np64(t):
            return None if t is None else t.detach().cpu().double().numpy().copy()

        return TwoLayerParams(np64(self.W), np64(self.v), np64(self.b), np64(self.center))


def to_torch(params: TwoLayerParams, cfg: ModelConfig, dtype=torch.float64, device=None) -> TwoLayerNet:
    """Build a ``TwoLayerNet`` holding ``params``."""
    return TwoLayerNet(cfg, params.dim, dtype=dtype, device=device).load_params(params)


def from_torch(module: TwoLayerNet) -> TwoLayerParams:
    """Numpy parameters of a ``TwoLayerNet``."""
    return module.to_params()


REFERENCE_KEYS = ("center", "prelulayer.W", "output_net.weight", "output_net.bias")


def load_reference_checkpoint(state: Mapping | str, p: float, dtype=torch.float32) -> TwoLayerNet:
    """Build a ``TwoLayerNet`` from the reference implementation's MNIST checkpoint.

    ``state`` is a state_dict or a path to one saved with ``torch.save``. The
    result computes exactly the reference forward pass: x - center, pReLU with
    input normalisation, then the linear output layer.
    """
    if isinstance(state, str):
        state = torch.load(state, map_location="cpu", weights_only=True)
    missing = [k for k in REFERENCE_KEYS if k not in state]
    if missing:
        raise ValueError(f"`state` is missing reference checkpoint key(s) {missing}")
    Wref = state["prelulayer.W"]
    D, h = Wref.shape
    C = state["output_net.weight"].shape[0]
    cfg = ModelConfig(width=h, activation="prelu", p=float(p), normalize_input=True,
                      center_input=True, bias=True, n_outputs=C)
    net = TwoLayerNet(cfg, D, dtype=dtype)
    with torch.no_grad():
        net.W.copy_(Wref.T)
        net.v.copy_(state["output_net.weight"].T)
        net.b.copy_(state["output_net.bias"])
        net.center.copy_(state["center"].reshape(-1))
    return net


def export_reference_checkpoint(net: TwoLayerNet) -> dict[str, torch.Tensor]:
    """State dict of ``net`` in the reference format (needs centring, bias, C >= 2 outputs)."""
    cfg = net.cfg
    if not (cfg.activation == "prelu" and cfg.center_input and cfg.bias and cfg.n_outputs >= 2
            and cfg.normalize_input):
        raise ValueError("`net` must be a pReLU net with center_input, normalize_input, bias and "
                         "n_outputs >= 2 to export in the reference format")
    return {
        "center": net.center.detach().reshape(1, -1).clone(),
        "prelulayer.W": net.W.detach().T.clone(),
        "output_net.weight": net.v.detach().T.clone(),
        "output_net.bias": net.b.detach().clone(),
    }


def as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
