"""Alignment-phase potentials G(u) and their gradients (THEORY.md section 4).

During the alignment phase a balanced neuron with direction u moves by
Riemannian gradient ascent (positive output sign) or descent (negative sign) of
a potential G on the unit sphere, and its norm grows at rate G(u).

Population potential (alpha -> 0), subclass weights w_k >= 0 with sum_k w_k = 1
(default w_k = 1/K, the reference setting):

    G(u)      = sum_k w_k y_k relu(<u, mu_k>)^p
    grad G(u) = p sum_k w_k y_k relu(<u, mu_k>)^(p-1) mu_k

Finite-dataset potential, n samples (x_i, y_i):

    G(u)      = (1/n) sum_i y_i relu(<u, x_i>)^p
    grad G(u) = (p/n) sum_i y_i relu(<u, x_i>)^(p-1) x_i

For p = 1 the factor relu(z)^0 is read as the indicator 1[z > 0] (the ReLU
subgradient used by gradient flow), so a sample exactly on the hyperplane
contributes nothing.

The formulas are evaluated as written on the given rows U; no normalisation of
U is applied (on the unit sphere relu(<u,x>)^p / ||u||^(p-1) = relu(<u,x>)^p).
The Riemannian gradient projects a Euclidean gradient onto the tangent space of
the sphere at u:

    riemannian_grad(u, g) = P_perp(u) g = g - (<g, u> / ||u||^2) u.

Every function is vectorised over many directions U of shape (m, D); a single
direction of shape (D,) gives a scalar potential or a (D,) gradient.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_array, check_real

__all__ = [
    "population_potential",
    "population_potential_grad",
    "dataset_potential",
    "dataset_potential_grad",
    "riemannian_grad",
]


def _directions(U) -> tuple[np.ndarray, bool]:
    U = check_array("U", U)
    if U.ndim not in (1, 2):
        raise ValueError(f"`U` must have shape (D,) or (m, D), got shape {U.shape}")
    single = U.ndim == 1
    return np.atleast_2d(U).astype(np.float64, copy=False), single


def _points(name: str, X, D: int) -> np.ndarray:
    X = check_array(name, X, ndim=2).astype(np.float64, copy=False)
    if X.shape[1] != D:
        raise ValueError(f"`{name}` must have {D} columns to match `U`, got shape {X.shape}")
    return X


def _signs(name: str, y, n: int, what: str) -> np.ndarray:
    y = check_array(name, y, ndim=1).astype(np.float64, copy=False)
    if y.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n} (one per {what}), got {y.shape[0]}")
    if not np.all(np.abs(y) == 1.0):
        raise ValueError(f"`{name}` must contain only -1 and +1")
    return y


def _weights(weights, K: int) -> np.ndarray:
    if weights is None:
        return np.full(K, 1.0 / K)
    w = check_array("weights", weights, ndim=1).astype(np.float64, copy=False)
    if w.shape[0] != K:
        raise ValueError(f"`weights` must have length K={K}, got {w.shape[0]}")
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(f"`weights` must be non-negative and sum to 1, got sum {w.sum():.12g}")
    return w


def _relu_pow(Z: np.ndarray, p: float) -> np.ndarray:
    return np.maximum(Z, 0.0) ** p


def _relu_pow_deriv(Z: np.ndarray, p: float) -> np.ndarray:
    """d/dz relu(z)^p = p relu(z)^(p-1); for p = 1 the indicator 1[z > 0]."""
    if p == 1.0:
        return (Z > 0).astype(np.float64)
    return p * np.maximum(Z, 0.0) ** (p - 1.0)


def population_potential(U, centres, labels, p: float, weights=None):
    """G(u) = sum_k w_k y_k relu(<u, mu_k>)^p for each row u of U.

    Parameters
    ----------
    U: (m, D) or (D,) directions.
    centres: (K, D) subclass centres mu_k (any centres, orthogonal or not).
    labels: (K,) subclass labels y_k in {-1, +1}.
    p: exponent, p >= 1.
    weights: (K,) non-negative subclass weights summing to 1; default 1/K each.

    Returns (m,) values (a float for a single direction).
    """
    p = check_real("p", p, 1.0)
    U2, single = _directions(U)
    C = _points("centres", centres, U2.shape[1])
    coef = _weights(weights, C.shape[0]) * _signs("labels", labels, C.shape[0], "centre")
    out = _relu_pow(U2 @ C.T, p) @ coef
    return float(out[0]) if single else out


def population_potential_grad(U, centres, labels, p: float, weights=None) -> np.ndarray:
    """Euclidean gradient grad G(u) = p sum_k w_k y_k relu(<u, mu_k>)^(p-1) mu_k.

    Same arguments as ``population_potential``; returns (m, D) (or (D,)).
    """
    p = check_real("p", p, 1.0)
    U2, single = _directions(U)
    C = _points("centres", centres, U2.shape[1])
    coef = _weights(weights, C.shape[0]) * _signs("labels", labels, C.shape[0], "centre")
    out = (_relu_pow_deriv(U2 @ C.T, p) * coef) @ C
    return out[0] if single else out


def dataset_potential(U, X, y, p: float):
    """G(u) = (1/n) sum_i y_i relu(<u, x_i>)^p for each row u of U.

    U: (m, D) or (D,); X: (n, D) samples; y: (n,) labels in {-1, +1}; p >= 1.
    Returns (m,) values (a float for a single direction).
    """
    p = check_real("p", p, 1.0)
    U2, single = _directions(U)
    X = _points("X", X, U2.shape[1])
    y = _signs("y", y, X.shape[0], "sample")
    out = _relu_pow(U2 @ X.T, p) @ (y / X.shape[0])
    return float(out[0]) if single else out


def dataset_potential_grad(U, X, y, p: float) -> np.ndarray:
    """Euclidean gradient grad G(u) = (p/n) sum_i y_i relu(<u, x_i>)^(p-1) x_i.

    Same arguments as ``dataset_potential``; returns (m, D) (or (D,)).
    """
    p = check_real("p", p, 1.0)
    U2, single = _directions(U)
    X = _points("X", X, U2.shape[1])
    y = _signs("y", y, X.shape[0], "sample")
    out = (_relu_pow_deriv(U2 @ X.T, p) * (y / X.shape[0])) @ X
    return out[0] if single else out


def riemannian_grad(U, grad) -> np.ndarray:
    """Tangent projection P_perp(u) g = g - (<g, u>/||u||^2) u, row by row.

    U and grad have the same shape, (m, D) or (D,). For unit u this is the
    Riemannian gradient on the sphere of a function with Euclidean gradient g.
    """
    U2, single = _directions(U)
    G = check_array("grad", grad)
    if G.shape != np.shape(U):
        raise ValueError(f"`grad` must have the same shape as `U` {np.shape(U)}, got {G.shape}")
    G = np.atleast_2d(G).astype(np.float64, copy=False)
    nrm2 = np.sum(U2 * U2, axis=1)
    if np.any(nrm2 == 0.0):
        raise ValueError("`U` must have non-zero rows (the sphere's tangent space needs u != 0)")
    out = G - (np.sum(G * U2, axis=1) / nrm2)[:, None] * U2
    return out[0] if single else out
