"""Reduced alignment dynamics on the unit sphere (THEORY.md section 4).

While the network output is small, a balanced neuron's direction follows

    du/dt = s P_perp(u) grad G(u),     P_perp(u) = I - u u^T,

Riemannian gradient ascent (s = +1) or descent (s = -1) of the potential G,
and its norm grows at rate s G(u). The potential is either the dataset one,
G(u) = (1/n) sum_i y_i relu(<u, x_i>)^p, or the population limit
G(u) = sum_k w_k y_k relu(<u, mu_k>)^p; both come from
``gradflow.theory.potential`` (``Potential.dataset`` / ``Potential.population``).

``find_extremal_vectors`` flows many random starts to convergence, clusters the
end points and reports each limit's G, basin share, kind (a subclass centre, a
class average, a subset average or other) and whether it is an isolated extremum:
G falls off at second order in every tangent direction, tested one-sided by second
differences (G is not smooth where a sample or centre enters the activation region).
For p = 2 no maximiser is isolated: G is constant on a whole face of the sphere, and
the result is flagged ``degenerate``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validate import check_int, check_real
from ..theory import potential as _pot


@dataclass(frozen=True)
class Potential:
    """A potential on the sphere: ``value(U) -> (m,)`` and Euclidean ``grad(U) -> (m, D)``.

    ``centres`` and ``labels`` (optional) are used to name limit points.
    """

    value: object
    grad: object
    p: float
    D: int
    centres: np.ndarray | None = None
    labels: np.ndarray | None = None
    span: np.ndarray | None = None  # orthonormal basis (r, D) of the relevant subspace

    def riemannian_grad(self, U: np.ndarray) -> np.ndarray:
        """P_perp(u) grad G(u) for each row u of U (unit rows)."""
        return _pot.riemannian_grad(U, self.grad(U))

    @classmethod
    def population(cls, centres, labels, p: float, weights=None) -> Potential:
        """Population-limit G(u) = sum_k w_k y_k relu(<u, mu_k>)^p (w_k = 1/K by default)."""
        C = np.asarray(centres, dtype=np.float64)
        lab = np.asarray(labels, dtype=np.float64)
        q, _ = np.linalg.qr(C.T)
        return cls(lambda U: _pot.population_potential(U, C, lab, p, weights),
                   lambda U: _pot.population_potential_grad(U, C, lab, p, weights),
                   float(p), C.shape[1], C, lab, q.T.copy())

    @classmethod
    def dataset(cls, X, y, p: float, centres=None, labels=None) -> Potential:
        """Finite-dataset G(u) = (1/n) sum_i y_i relu(<u, x_i>)^p."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return cls(lambda U: _pot.dataset_potential(U, X, y, p),
                   lambda U: _pot.dataset_potential_grad(U, X, y, p), float(p), X.shape[1],
                   None if centres is None else np.asarray(centres, dtype=np.float64),
                   None if labels is None else np.asarray(labels, dtype=np.float64))


def reduced_flow(U0, potential: Potential, t_max: float, sign: float = 1.0, dt: float | None = None,
                 gtol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Integrate du/dt = sign P_perp(u) grad G(u) for every row of U0 up to t_max.

    Classical RK4 with step ``dt`` (default 0.5 / (p max|grad|) at the start),
    each step followed by the retraction u <- u/||u||; dt is halved whenever a
    step would move G the wrong way (beyond the local stability limit), down to
    ``dt / 64``, and doubled again after 8 accepted steps in a row. Stops early once
    every row's Riemannian gradient is below ``gtol``. For p = 1 the field is
    discontinuous: at a sliding surface the iterates chatter within O(dt) of it and G
    dips at every step size, so at the floor such steps are accepted (without the floor
    dt fell to 1e-10 and a dataset-potential run at p = 1 never finished).
    Returns (U(t_end), t_end).
    """
    t_max = check_real("t_max", t_max, 0.0, lo_open=True)
    gtol = check_real("gtol", gtol, 0.0)
    if isinstance(sign, bool) or sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"`sign` must be +1 or -1, got {sign!r}")
    U = np.atleast_2d(np.asarray(U0, dtype=np.float64))
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("`U0` rows must be finite and non-zero (they are directions)")
    U = U / norms
    if dt is None:
        probe = np.abs(potential.riemannian_grad(U)).max()
        dt = 0.5 / max(potential.p * max(probe, 1e-3), 1e-3)
    dt = check_real("dt", dt, 0.0, lo_open=True)
    dt_max, dt_min, n_ok = dt, dt / 64.0, 0

    def F(V):
        V = V / np.linalg.norm(V, axis=1, keepdims=True)
        return sign * potential.riemannian_grad(V)

    t = 0.0
    G = potential.value(U)
    while t < t_max:
        h = min(dt, t_max - t)
        k1 = F(U)
        if np.max(np.linalg.norm(k1, axis=1)) < gtol:
            break
        k2 = F(U + 0.5 * h * k1)
        k3 = F(U + 0.5 * h * k2)
        k4 = F(U + h * k3)
        U_new = U + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        U_new /= np.linalg.norm(U_new, axis=1, keepdims=True)
        G_new = potential.value(U_new)
        # An ascent (descent) flow never lowers (raises) G: a violation means dt is beyond
        # the stability limit of the local curvature, so halve it and retry.
        if (np.any(sign * (G_new - G) < -1e-13 * np.maximum(np.abs(G), 1e-300))
                and dt > dt_min):
            dt, n_ok = max(0.5 * dt, dt_min), 0
            continue
        U, G = U_new, G_new
        t += h
        n_ok += 1
        if n_ok >= 8 and dt < dt_max:  # the stiff or chattering stretch may be over
            dt, n_ok = min(2.0 * dt, dt_max), 0
    return U, t


@dataclass
class Extremum:
    """One limit of the reduced flow: direction u, value G(u), basin share, kind, isolation.

    curvature: largest second difference of sign*G along the tangent space (< 0: isolated).
    """

    u: np.ndarray
    G: float
    share: float
    kind: str
    isolated: bool
    curvature: float


@dataclass
class ExtremalResult:
    extrema: list = field(default_factory=list)
    degenerate: bool = False
    sign: float = 1.0
    n_starts: int = 0

    @property
    def G_star(self) -> float:
        """The best value reached: max G for sign=+1, min G for sign=-1."""
        vals = [e.G for e in self.extrema]
        return max(vals) if self.sign > 0 else min(vals)


def _classify(u, pot: Potential, tol: float) -> str:
    if pot.centres is None or pot.labels is None:
        return "other"
    C = pot.centres / np.linalg.norm(pot.centres, axis=1, keepdims=True)
    cos = C @ u
    k = int(np.argmax(cos))
    if cos[k] > 1 - tol:
        return f"centre {k}"
    for lab, tag in ((1.0, "+"), (-1.0, "-")):
        m = pot.centres[pot.labels == lab].sum(axis=0)
        if np.linalg.norm(m) > 0 and float(u @ m) / np.linalg.norm(m) > 1 - tol:
            return f"class average {tag}"
    # normalised sum of a subset of one class's centres (local extrema of p = 1)
    active = cos > 0.5 * cos[k]
    labs = set(pot.labels[active])
    if len(labs) == 1:
        m = C[active].sum(axis=0)
        if float(u @ m) / np.linalg.norm(m) > 1 - tol:
            return f"subset average {'+' if labs.pop() > 0 else '-'} ({int(active.sum())} centres)"
    return "other"


def _tangent_curvature(u, pot: Potential, sign: float, h: float = 1e-3) -> float:
    """max over i and +- of sign (G(retract(u +- h t_i)) - G(u)) / h^2, t_i a tangent basis.

    One-sided differences of values, so it also works at the kinks of p = 1:
    negative for an isolated maximum (sign +1) or minimum (sign -1), ~0 when G
    is flat along some tangent direction. Only directions in ``pot.span`` are
    probed when it is given (G is strictly concave across the span anyway).
    """
    basis = pot.span if pot.span is not None else np.eye(pot.D)
    T = basis - np.outer(basis @ u, u)
    # Orthonormal basis of T's row space (the tangent directions) by SVD: QR without
    # pivoting on this rank-deficient T kept near-radial columns, so at p = 1 the probe
    # "saw" G flat where it has an isolated maximum (mubar_+ reported degenerate).
    _, sv, Vt = np.linalg.svd(T, full_matrices=False)
    T = Vt[sv > 1e-8 * max(float(sv.max(initial=0.0)), 1.0)]
    if pot.centres is not None:
        # Also probe toward each centre: a rotated basis mixes centres of both classes and
        # misses the flat faces of p = 2 (G constant from mu_k toward another mu_l of its class).
        Tc = pot.centres - np.outer(pot.centres @ u, u)
        norms = np.linalg.norm(Tc, axis=1)
        T = np.vstack([T, Tc[norms > 1e-8] / norms[norms > 1e-8, None]])
    if T.shape[0] == 0:
        return -np.inf
    g0 = float(pot.value(u[None])[0])
    worst = -np.inf
    for sgn in (1.0, -1.0):  # one-sided: p = 2 is flat towards +mu_l but not towards -mu_l
        V = u[None] + sgn * h * T
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        worst = max(worst, float(np.max(sign * (pot.value(V) - g0))) / h**2)
    return worst


def find_extremal_vectors(potential: Potential, n_starts: int = 200, sign: float = 1.0,
                          t_max: float = 2000.0, seed: int = 0, cluster_tol: float = 1e-3,
                          flat_tol: float = 1e-3, dt: float | None = None) -> ExtremalResult:
    """Flow ``n_starts`` random directions to convergence and cluster the limits.

    Starts are Gaussian directions in ``potential.span`` when it is given (the
    population case: the out-of-span part of u only decays), else in R^D.
    Limits whose cosine exceeds 1 - cluster_tol form one cluster. For each:
    G, basin share (fraction of starts), kind ('centre k', 'class average +/-',
    'subset average +/- (m centres)' or 'other') and ``isolated`` (tangent Hessian of sign*G negative definite
    beyond flat_tol * |G|, by second differences of G). The result is
    ``degenerate`` when no limit with positive sign*G is isolated (p = 2: a whole face of maximisers). For p = 1
    the flow can also stop on the boundary of an activation region (a 'subset
    average' whose missing centre would raise G at first order): such limits
    are reported with ``isolated=False``.
    """
    n_starts = check_int("n_starts", n_starts, 1)
    cluster_tol = check_real("cluster_tol", cluster_tol, 0.0, 2.0, lo_open=True)
    flat_tol = check_real("flat_tol", flat_tol, 0.0)
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    if potential.span is not None:
        U0 = rng.standard_normal((n_starts, potential.span.shape[0])) @ potential.span
    else:
        U0 = rng.standard_normal((n_starts, potential.D))
    U, _ = reduced_flow(U0, potential, t_max, sign=sign, dt=dt)
    reps, members = [], []
    for i in range(n_starts):
        for c, r in enumerate(reps):
            if float(U[i] @ r) > 1 - cluster_tol:
                members[c].append(i)
                break
        else:
            reps.append(U[i])
            members.append([i])
    extrema = []
    for idx in members:
        u = U[idx].mean(axis=0)
        u /= np.linalg.norm(u)
        g = float(potential.value(u[None])[0])
        hx = _tangent_curvature(u, potential, sign)
        extrema.append(Extremum(u, g, len(idx) / n_starts, _classify(u, potential, cluster_tol),
                                bool(hx < -flat_tol * max(abs(g), 1e-12)), hx))
    extrema.sort(key=lambda e: -sign * e.G)
    degenerate = not any(e.isolated and sign * e.G > 0 for e in extrema)
    return ExtremalResult(extrema, degenerate, float(sign), n_starts)


def predicted_alignment_time(eps: float, G_star: float) -> float:
    """Predicted alignment-phase duration log(1/eps) / G* (THEORY.md section 4)."""
    eps = check_real("eps", eps, 0.0, 1.0, lo_open=True, hi_open=True)
    G_star = check_real("G_star", G_star, 0.0, lo_open=True)
    return float(np.log(1.0 / eps) / G_star)
