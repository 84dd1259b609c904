"""Alignment-phase predictions (THEORY.md section 4).

Population potential with equal weights 1/K and orthonormal centres,
G(u) = (1/K) sum_k y_k relu(<u, mu_k>)^p (see ``potential``). Its extremal
values on the unit sphere (own derivation, Hoelder's inequality):
    sum_{k+} relu(u_k)^p <= K1^(1 - p/2) (sum u_k^2)^(p/2)  for p <= 2  (equality at mubar_+),
    sum_{k+} relu(u_k)^p <= (sum u_k^2)^(p/2)               for p >= 2  (equality at a centre),
so  G* = max_u G(u) = K1^max(0, 1-p/2) / K:  sqrt(K1)/K at p = 1, 1/K for p >= 2;
and min_u G(u) = -K2^max(0, 1-p/2) / K.

Positive neurons grow at rate G* (d log||w||/dt = G at a maximiser), negative ones
at rate |G_min| (d log||w||/dt = -G at a minimiser), and the phase ends when the
faster group makes the output O(1), so it lasts about
    T = log(1/eps) / max(G*, |G_min|) = log(1/eps) K / max(K1, K2)^max(0, 1-p/2)
(``alignment_rate``) and the p = 3 over p = 1 ratio is sqrt(max(K1, K2)).
THEORY.md section 4 writes log(1/eps)/G* and sqrt(K1): that assumes K1 >= K2
(true in the reference setting K1 = 6, K2 = 4). Swapping the labels leaves the
dynamics unchanged, and so does the max.

Min, Mallada & Vidal (ICLR 2024), ReLU: with mu = min_{i,j} cos(y_i x_i, y_j x_j)
> 0, alignment completes in time O(log n / sqrt(mu)). We report log(n)/sqrt(mu),
the bound UP TO its unspecified constant (we do not reproduce the constant).
"""
from __future__ import annotations

import math

import numpy as np

from .._validate import check_array, check_int, check_real
from .classifiers import check_centres_labels


def _check_KK1(K, K1):
    K = check_int("K", K, 2)
    return K, check_int("K1", K1, 1, K - 1)


def potential_max(K: int, K1: int, p: float) -> float:
    """G* = max over the unit sphere of G: K1^max(0, 1 - p/2) / K."""
    K, K1 = _check_KK1(K, K1)
    p = check_real("p", p, 1.0)
    return K1 ** max(0.0, 1.0 - p / 2.0) / K


def potential_min(K: int, K1: int, p: float) -> float:
    """min over the unit sphere of G: -K2^max(0, 1 - p/2) / K, K2 = K - K1."""
    K, K1 = _check_KK1(K, K1)
    p = check_real("p", p, 1.0)
    return -((K - K1) ** max(0.0, 1.0 - p / 2.0)) / K


def alignment_rate(K: int, K1: int, p: float) -> float:
    """Growth rate that ends the alignment phase: max(G*, |G_min|)
    = max(K1, K - K1)^max(0, 1 - p/2) / K (the faster of the two neuron groups)."""
    return max(potential_max(K, K1, p), -potential_min(K, K1, p))


def potential_maximiser(centres, labels, p: float) -> np.ndarray:
    """A maximiser of G for orthonormal centres: mubar_+ for p < 2, the first positive
    centre for p >= 2 (for p = 2 every unit vector in the positive orthant of the
    positive span is a maximiser)."""
    C, y = check_centres_labels(centres, labels)
    p = check_real("p", p, 1.0)
    if not np.allclose(C @ C.T, np.eye(len(C)), atol=1e-8):
        # for other centres the maximiser is neither of these (nor even unit length)
        raise ValueError("`centres` must be orthonormal (C C^T = I) for this closed form")
    if p >= 2.0:
        return C[np.flatnonzero(y > 0)[0]].copy()
    mu = C[y > 0].sum(axis=0)
    return mu / np.linalg.norm(mu)


def alignment_duration(eps: float, G_star: float) -> float:
    """Predicted alignment-phase duration log(1/eps) / G*, for 0 < eps < 1 and G* > 0."""
    eps = check_real("eps", eps, 0.0, 1.0, lo_open=True, hi_open=True)
    G_star = check_real("G_star", G_star, 0.0, lo_open=True)
    return math.log(1.0 / eps) / G_star


def duration_ratio(K1: int, p_num: float = 3.0, p_den: float = 1.0, *, K: int | None = None
                   ) -> float:
    """T(p_num)/T(p_den) = rate(p_den)/rate(p_num) = Km^(max(0,1-p_den/2) - max(0,1-p_num/2)),
    Km = max(K1, K - K1) (see ``alignment_rate``).

    The default p = 3 over p = 1 gives sqrt(max(K1, K - K1)). ``K`` (keyword) is
    required: K1 alone does not fix the ratio when K - K1 > K1.
    """
    if K is None:
        raise ValueError("`K` (number of subclasses, K > K1) is required: the ratio is "
                         "sqrt(max(K1, K - K1)) at p=3/p=1, so K1 alone is ambiguous")
    K, K1 = _check_KK1(K, K1)
    a = check_real("p_num", p_num, 1.0)
    b = check_real("p_den", p_den, 1.0)
    return max(K1, K - K1) ** (max(0.0, 1.0 - b / 2.0) - max(0.0, 1.0 - a / 2.0))


def separability_mu(X, y, chunk: int = 4096) -> float:
    """mu = min_{i,j} cos(y_i x_i, y_j x_j) (Min, Mallada & Vidal 2024); O(n^2), chunked."""
    X = check_array("X", X, ndim=2).astype(np.float64)
    y = check_array("y", y, ndim=1).astype(np.float64)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"`y` must have length n={X.shape[0]}, got {y.shape[0]}")
    check_int("chunk", chunk, 1)
    nrm = np.linalg.norm(X, axis=1)
    if np.any(nrm == 0):
        raise ValueError("`X` must not contain zero rows (the cosine is undefined)")
    if not np.all(np.abs(y) == 1.0) or np.all(y == y[0]):
        raise ValueError("`y` must hold labels in {-1, +1} with both classes present")
    Z = (y / nrm)[:, None] * X
    lo = np.inf
    for i in range(0, Z.shape[0], chunk):
        lo = min(lo, float(np.min(Z[i:i + chunk] @ Z.T)))
    return min(lo, 1.0)


def alignment_time_bound(X, y) -> float:
    """log(n) / sqrt(mu): the Min-Mallada-Vidal O(.) bound without its constant.

    Raises ValueError when mu <= 0 (the data are not separable in their sense).
    """
    mu = separability_mu(X, y)
    if mu <= 0:
        raise ValueError(f"`X`, `y` have separability mu = {mu:.4g} <= 0: the bound needs mu > 0")
    return math.log(np.shape(X)[0]) / math.sqrt(mu)
