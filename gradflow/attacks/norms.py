"""Distance objects: which norm an attack measures and how it steps and projects.

A ``Norm`` knows three things about ||.||_q (q = 2 or inf):

- ``of(d)``: the per-sample norm of a batch of perturbations d (n, ...);
- ``steepest(g)``: the unit-norm steepest-ascent direction for a gradient g,
  argmax_{||s|| <= 1} <g, s>, which is g / ||g||_2 for l2 and sign(g) for l-inf;
- ``project(d, eps)``: the Euclidean projection onto the ball ||d|| <= eps
  (radial scaling for l2, clipping for l-inf), eps a scalar or one per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validate import check_choice


def _flat(d: torch.Tensor) -> torch.Tensor:
    return d.reshape(d.shape[0], -1)


def unit_rows(d: torch.Tensor) -> torch.Tensor:
    """Each sample of d divided by its l2 norm; rows that are exactly zero stay zero.

    No absolute floor on the norm: gradients of saturated losses can be far below any
    fixed floor (or subnormal, where ||d|| itself underflows) while their direction is
    still exact. Dividing by the max-abs entry first brings every nonzero row to a max
    entry of 1, so its norm lies in [1, sqrt(dim)] and neither underflows nor overflows.
    """
    f = _flat(d)
    big = f.abs().amax(dim=1, keepdim=True)
    live = big > 0
    f = f / torch.where(live, big, torch.ones_like(big))
    nrm = torch.linalg.vector_norm(f, dim=1, keepdim=True)
    return (f / torch.where(live, nrm, torch.ones_like(nrm))).reshape(d.shape)


def _per_sample(eps, d: torch.Tensor) -> torch.Tensor:
    """eps as a tensor broadcastable against d: shape (n, 1, 1, ...)."""
    e = torch.as_tensor(eps, dtype=d.dtype, device=d.device)
    if e.dim() == 0:
        e = e.expand(d.shape[0])
    return e.reshape((d.shape[0],) + (1,) * (d.dim() - 1))


@dataclass(frozen=True)
class Norm:
    """Base distance. Subclasses implement ``of``, ``steepest`` and ``project``."""

    name: str = "base"

    def of(self, d: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def steepest(self, g: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def project(self, d: torch.Tensor, eps) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def random_in_ball(self, shape, eps, generator: torch.Generator, dtype, device) -> torch.Tensor:
        """A random point of the ball of radius eps (uniform for l-inf, uniform in volume for l2)."""
        raise NotImplementedError  # pragma: no cover - interface

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class L2(Norm):
    """Euclidean distance ||d||_2 = sqrt(sum_i d_i^2)."""

    name: str = "l2"

    def of(self, d):
        return torch.linalg.vector_norm(_flat(d), dim=1)

    def steepest(self, g):
        return unit_rows(g)

    def project(self, d, eps):
        n = self.of(d)
        e = torch.as_tensor(eps, dtype=d.dtype, device=d.device)
        # only rows outside the ball are scaled (n > e >= 0 also keeps the divisor nonzero)
        scale = torch.where(n > e, e / torch.where(n > e, n, torch.ones_like(n)),
                            torch.ones_like(n))
        return d * _per_sample(scale, d)

    def random_in_ball(self, shape, eps, generator, dtype, device):
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        z = self.steepest(z)
        dim = z[0].numel()
        u = torch.rand(shape[0], generator=generator, dtype=dtype, device=device)
        r = u.pow(1.0 / dim)  # radius law of a uniform point in the l2 ball
        return z * _per_sample(r, z) * _per_sample(eps, z)


@dataclass(frozen=True)
class Linf(Norm):
    """Chebyshev distance ||d||_inf = max_i |d_i|."""

    name: str = "linf"

    def of(self, d):
        return _flat(d).abs().amax(dim=1)

    def steepest(self, g):
        return torch.sign(g)

    def project(self, d, eps):
        e = _per_sample(eps, d)
        return torch.maximum(torch.minimum(d, e), -e)

    def random_in_ball(self, shape, eps, generator, dtype, device):
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device) * 2.0 - 1.0
        return u * _per_sample(eps, u)


l2 = L2()
linf = Linf()
NORMS = {"l2": l2, "linf": linf}


def get_norm(norm: str | Norm) -> Norm:
    """The distance object for 'l2' or 'linf' (a ``Norm`` passes through)."""
    if isinstance(norm, Norm):
        return norm
    return NORMS[check_choice("norm", norm, tuple(NORMS))]
