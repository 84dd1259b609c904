"""Activation library: registered by name, each with numpy value/derivative and torch.

A neuron's output is ``sigma(x; w) = phi(<w, x>) / ||w||^(w_power) [/ ||x||^(x_power)]``.
``phi`` is the scalar nonlinearity; the norm divisions make pReLU
positively 1-homogeneous in w (THEORY.md section 2). The model code applies the
norms, so an activation only supplies ``phi``, ``dphi`` and ``w_power``.

``homogeneity`` is the degree k with sigma(x; c w) = c^k sigma(x; w) for c > 0
(``None`` when there is none). Gradient flow conserves k v_j^2 - ||w_j||^2 when
k is defined (THEORY.md section 3).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.special import erf, expit

from ._validate import check_choice, check_real

_SQRT2 = np.sqrt(2.0)
_SQRT2PI = np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Activation:
    """A scalar nonlinearity phi with its derivative and torch twin.

    Attributes
    ----------
    name, params: registry name and its parameters.
    phi, dphi:    numpy functions z -> phi(z), phi'(z) (elementwise).
    torch_fn:     torch function z -> phi(z), differentiable by autograd.
    w_power:      sigma divides phi(<w,x>) by ||w||^w_power (p-1 for pReLU, else 0).
    homogeneity:  degree of positive homogeneity of sigma in w, or None.
    """

    name: str
    params: dict = field(default_factory=dict)
    phi: Callable = None
    dphi: Callable = None
    torch_fn: Callable = None
    w_power: float = 0.0
    homogeneity: float | None = None
    phi_dphi: Callable | None = None

    def both(self, z) -> tuple:
        """(phi(z), phi'(z)) in one pass where the activation provides a fused version."""
        if self.phi_dphi is not None:
            return self.phi_dphi(z)
        return self.phi(z), self.dphi(z)

    def __call__(self, z):
        if isinstance(z, torch.Tensor):
            return self.torch_fn(z)
        return self.phi(z)

    @property
    def spec(self) -> str:
        inner = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({inner})" if inner else self.name


def _relu_pow(p: float):
    """phi = relu^p, phi' and a fused (phi, phi') using products for integer p (pow is slow)."""
    if p == 1.0:
        def both(z):
            return np.maximum(z, 0.0), (z > 0).astype(np.result_type(z, 1.0))
    elif p == 2.0:
        def both(z):
            r = np.maximum(z, 0.0)
            return r * r, 2.0 * r
    elif p == 3.0:
        def both(z):
            r = np.maximum(z, 0.0)
            r2 = r * r
            return r2 * r, 3.0 * r2
    else:
        def both(z):
            r = np.maximum(z, 0.0)
            rp1 = r ** (p - 1.0)
            return rp1 * r, p * rp1

    return (lambda z: both(z)[0]), (lambda z: both(z)[1]), both


def _torch_relu_pow(p: float):
    if p == 1.0:
        return torch.relu
    return lambda z: torch.relu(z) ** p


def _prelu(p: float = 1.0, **_) -> Activation:
    p = check_real("p", p, 1.0)
    phi, dphi, both = _relu_pow(p)
    return Activation("prelu", {"p": p}, phi, dphi, _torch_relu_pow(p), w_power=p - 1.0,
                      homogeneity=1.0, phi_dphi=both)


def _relu_p(p: float = 1.0, **_) -> Activation:
    p = check_real("p", p, 1.0)
    phi, dphi, both = _relu_pow(p)
    return Activation("relu_p", {"p": p}, phi, dphi, _torch_relu_pow(p), homogeneity=p,
                      phi_dphi=both)


def _relu(**_) -> Activation:
    phi, dphi, both = _relu_pow(1.0)
    return Activation("relu", {}, phi, dphi, torch.relu, homogeneity=1.0, phi_dphi=both)


def _capped_relu(beta: float = 1.0, **_) -> Activation:
    beta = check_real("beta", beta, 0.0, lo_open=True)
    return Activation(
        "capped_relu",
        {"beta": beta},
        lambda z: np.clip(z, 0.0, beta),
        lambda z: ((z > 0) & (z < beta)).astype(np.result_type(z, 1.0)),
        lambda z: torch.clamp(z, 0.0, beta),
    )


def _softplus_np(z, a=1.0):
    return np.logaddexp(0.0, a * z) / a


def _softplus(**_) -> Activation:
    return Activation("softplus", {}, _softplus_np, expit, torch.nn.functional.softplus)


def _param_softplus(a: float = 10.0, **_) -> Activation:
    a = check_real("a", a, 0.0, lo_open=True)
    return Activation(
        "param_softplus",
        {"a": a},
        lambda z: _softplus_np(z, a),
        lambda z: expit(a * z),
        lambda z: torch.nn.functional.softplus(z, beta=a),
    )


def _silu(**_) -> Activation:
    def dphi(z):
        s = expit(z)
        return s * (1.0 + z * (1.0 - s))

    return Activation("silu", {}, lambda z: z * expit(z), dphi, torch.nn.functional.silu)


def _gelu(**_) -> Activation:
    def cdf(z):
        return 0.5 * (1.0 + erf(z / _SQRT2))

    return Activation(
        "gelu",
        {},
        lambda z: z * cdf(z),
        lambda z: cdf(z) + z * np.exp(-0.5 * z * z) / _SQRT2PI,
        torch.nn.functional.gelu,
    )


def _elu(**_) -> Activation:
    return Activation(
        "elu",
        {"alpha": 1.0},
        lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
        lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))),
        torch.nn.functional.elu,
    )


def _tanh(**_) -> Activation:
    return Activation("tanh", {}, np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, torch.tanh)


class _ReluSmoothGrad(torch.autograd.Function):
    """ReLU in the forward pass, parametric-softplus derivative sigmoid(a z) backward.

    The smooth adversarial training trick of Xie et al. (2020): the network
    computes ReLU, but attacks and training see a smooth gradient.
    """

    @staticmethod
    def forward(ctx, z, a):
        ctx.save_for_backward(z)
        ctx.a = a
        return torch.relu(z)

    @staticmethod
    def backward(ctx, grad_out):
        (z,) = ctx.saved_tensors
        return grad_out * torch.sigmoid(ctx.a * z), None


def relu_smooth_grad(z: torch.Tensor, a: float = 10.0) -> torch.Tensor:
    """ReLU forward with the parametric-softplus gradient sigmoid(a z) backward."""
    return _ReluSmoothGrad.apply(z, a)


def _relu_softplus_grad(a: float = 10.0, **_) -> Activation:
    a = check_real("a", a, 0.0, lo_open=True)
    # numpy side: dphi is the surrogate derivative, as in the torch backward.
    return Activation(
        "relu_softplus_grad",
        {"a": a},
        lambda z: np.maximum(z, 0.0),
        lambda z: expit(a * z),
        lambda z: relu_smooth_grad(z, a),
    )


_REGISTRY: dict[str, Callable[..., Activation]] = {
    "prelu": _prelu,
    "relu_p": _relu_p,
    "relu": _relu,
    "capped_relu": _capped_relu,
    "softplus": _softplus,
    "param_softplus": _param_softplus,
    "silu": _silu,
    "gelu": _gelu,
    "elu": _elu,
    "tanh": _tanh,
    "relu_softplus_grad": _relu_softplus_grad,
}


def available() -> tuple[str, ...]:
    """Names of the registered activations."""
    return tuple(_REGISTRY)


def register(name: str, factory: Callable[..., Activation]) -> None:
    """Register a new activation factory under ``name`` (keyword params -> Activation)."""
    if not isinstance(name, str) or not name:
        raise ValueError("`name` must be a non-empty string")
    _REGISTRY[name] = factory


def parse_spec(spec: str) -> tuple[str, dict]:
    """Parse 'name' or 'name:key=val,key=val' (e.g. 'prelu:p=3', 'capped_relu:beta=0.1')."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`activation` must be a non-empty string, got {spec!r}")
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, val = item.partition("=")
        if not eq:
            raise ValueError(f"`activation` spec {spec!r}: expected key=value, got {item!r}")
        try:
            params[key.strip()] = float(val)
        except ValueError:
            raise ValueError(f"`activation` spec {spec!r}: {key}={val!r} is not a number") from None
    return name.strip(), params


def get_activation(spec: str, **params) -> Activation:
    """Build an activation from a name or spec string; keyword params override the spec."""
    name, parsed = parse_spec(spec)
    check_choice("activation", name, available())
    parsed.update(params)
    return _REGISTRY[name](**parsed)
