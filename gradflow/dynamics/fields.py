"""The gradient-flow vector field in two sets of variables, with an optional frozen pattern.

``FlowProblem`` holds the data and model. A *representation* maps network
parameters to one flat state vector y and evaluates dy/dt = F(y):

* ``CartesianRep``: y = (W, v, b); F = -grad L (any activation, any loss). With
  ``conserve=True`` (1-homogeneous activations) ``finalize`` projects every neuron
  back onto its invariant ||v_j||^2 - ||w_j||^2 = c_j(0) (``project_invariants``).
* ``PolarRep``: for balanced neurons of a 1-homogeneous pReLU net (|v_j| =
  ||w_j||, which the flow conserves), y = (u_j, rho_j) with w_j = e^rho_j u_j,
  v_j = s_j e^rho_j. With omega_i = -dL/df_i and z_ij = <u_j, x_i>:

      f_i        = sum_j s_j e^(2 rho_j) relu(z_ij)^p
      d rho_j/dt = s_j sum_i omega_i relu(z_ij)^p
      d u_j/dt   = s_j p P_perp(u_j) sum_i omega_i relu(z_ij)^(p-1) x_i.

  (THEORY.md section 4 is the case omega_i = y_i/n.) The norm equation is
  linear in rho, so the exponential growth of the alignment phase is exact.

Both accept ``mask`` (n, h) booleans: for ReLU (p = 1) relu(z) is replaced by
mask * z and relu'(z) by mask, i.e. the activation pattern is held fixed, which
makes the field smooth (see docs/dynamics.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..config import ModelConfig
from ..losses import check_labels, check_loss, exp_cap, mean_loss_and_dlogits
from ..model import TwoLayerParams, gradient_from_features, output_sq_norms


class NonFiniteError(FloatingPointError):
    """The field produced NaN (``kind='nan'``) or an exponent beyond float range (``'overflow'``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class FlowProblem:
    """Data and model of one gradient flow. ``X`` is stored centred (x - c)."""

    X: np.ndarray
    y: np.ndarray
    model: ModelConfig
    loss: str = "exponential"
    center: np.ndarray | None = None

    def __post_init__(self):
        check_loss(self.loss, self.model.n_outputs)
        self.X = np.ascontiguousarray(self.X, dtype=np.float64)
        # once here: dlogits runs at every stage with these same labels
        check_labels(self.y, self.X.shape[0], self.model.n_outputs, self.loss)
        if self.center is not None and self.model.center_input:
            self.X = self.X - self.center
        self.act = self.model.activation_obj()
        self.q = self.act.w_power
        r = self.q if self.model.normalize_input else 0.0
        self.xscale = None if r == 0 else np.sum(self.X**2, axis=1) ** (-0.5 * r)
        self.relu_power = (float(self.act.params.get("p", 1.0))
                           if self.act.name in ("prelu", "relu") else None)
        self._cap = exp_cap(np.float64)
        self.xnorm = np.linalg.norm(self.X, axis=1)

    @cached_property
    def groups(self) -> SurfaceGroups | None:
        """Samples sharing a ReLU switching surface (``surface_groups``), computed once."""
        return surface_groups(self.X)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def is_relu(self) -> bool:
        """True when the field is discontinuous (phi = relu, p = 1): patterns can be frozen."""
        return self.relu_power == 1.0

    def dlogits(self, f: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean loss and g = dL/df, raising NonFiniteError on NaN or exponent overflow."""
        if not np.all(np.isfinite(f)):
            raise NonFiniteError("nan", "network output became NaN or infinite")
        if self.loss == "exponential":
            zmin = float(np.min(self.y * f))
            if -zmin > self._cap:
                raise NonFiniteError(
                    "overflow", f"margin {zmin:.4g} makes exp(-margin) overflow float64")
        value, g = mean_loss_and_dlogits(f, self.y, self.loss, labels_checked=True)
        if not np.isfinite(value):
            raise NonFiniteError("nan", "loss became NaN or infinite")
        return value, g


def _power(R, e):
    """R**e for R >= 0, with cheap products for the common integer exponents."""
    if e == 1.0:
        return R
    if e == 2.0:
        return R * R
    if e == 3.0:
        return R * R * R
    return R**e


def _scaled(M, xscale):
    return M if xscale is None else M * xscale[:, None]


class _SwitchPushes:
    """Pattern-switch corrections shared by both variables (ReLU, p = 1): each defines
    ``push_vectors`` (the velocity change of neuron j when sample i is active rather than
    not) and ``shift`` (add a displacement per neuron)."""

    def add_jump(self, y, ii, jj, dt, g):
        """Neuron j_k moved by dt_k times pair k's push, for pairs (i_k, j_k): a pattern
        switch's effect over dt_k."""
        out = np.zeros((self.h, self.D))
        np.add.at(out, jj, np.asarray(dt, dtype=np.float64)[:, None]
                  * self.push_vectors(y, ii, jj, g))
        return self.shift(y, out)


class CartesianRep(_SwitchPushes):
    """y = (W.ravel(), v.ravel(), b); F(y) = -grad L(W, v, b) (model.gradient_from_features)."""

    name = "cartesian"

    def __init__(self, problem: FlowProblem, params: TwoLayerParams, conserve: bool = False):
        self.pb = problem
        self.h, self.D = params.W.shape
        self.vshape = params.v.shape
        self.has_b = bool(problem.model.bias and params.b is not None)
        self.bshape = None if not self.has_b else params.b.shape
        self.center = params.center
        self.nW = self.h * self.D
        self.nv = int(np.prod(self.vshape))
        if conserve and problem.act.homogeneity != 1.0:
            raise ValueError("`project`=True needs an activation that is 1-homogeneous in w "
                             f"(prelu, relu); {problem.act.name!r} conserves no invariant")
        self.c0 = params.invariant() if conserve else None

    def pack(self, params: TwoLayerParams) -> np.ndarray:
        parts = [params.W.ravel(), params.v.ravel()]
        if self.has_b:
            parts.append(np.ravel(params.b))
        return np.concatenate(parts).astype(np.float64)

    def split(self, y):
        W = y[: self.nW].reshape(self.h, self.D)
        v = y[self.nW : self.nW + self.nv].reshape(self.vshape)
        b = y[self.nW + self.nv :].reshape(self.bshape) if self.has_b else None
        return W, v, b

    def unpack(self, y) -> TwoLayerParams:
        W, v, b = self.split(y)
        return TwoLayerParams(W.copy(), v.copy(), None if b is None else b.copy(),
                              None if self.center is None else self.center.copy())

    def preact(self, y) -> np.ndarray:
        return self.pb.X @ self.split(y)[0].T

    def field(self, y, mask=None, sliding=None):
        """Return (F(y), loss, f). With ``mask``, relu(z) -> mask*z and relu'(z) -> mask.

        ``sliding`` (n, h) marks pairs held on <w_j, x_i> = 0 (Filippov, p = 1): sample i
        then pushes w_j with lambda_ij times its active push, lambda chosen so that
        d<w_j, x_i>/dt = 0 for every sliding i of neuron j (min-norm solve per neuron,
        as in ``PolarRep``; it adds nothing to v_j since relu(0) = 0). lambda is left
        in ``self.last_lambda``.
        """
        pb = self.pb
        W, v, b = self.split(y)
        Z = pb.X @ W.T
        if mask is None:
            phi, dphi = pb.act.both(Z)
        else:
            dphi = (mask if sliding is None else mask & ~sliding).astype(np.float64)
            phi = Z * dphi
        value, f, g, grad_W, grad_v = gradient_from_features(
            pb.X, W, v, b, phi, dphi, pb.q, pb.xscale, pb.dlogits)
        self.last_lambda = None
        if sliding is not None and sliding.any():
            # active sample i adds coef_ij x_i to grad_W_j, coef_ij = <g_i, v_j> xscale_i
            # (lambda = mu / coef is the same whether the solve is on grad_W or on -grad_W)
            coef = np.multiply.outer(g, v) if v.ndim == 1 else g @ v.T
            if pb.xscale is not None:
                coef = coef * pb.xscale[:, None]
            self.last_lambda = filippov_push(pb, grad_W, sliding, coef)
        parts = [-grad_W.ravel(), -grad_v.ravel()]
        if b is not None:
            parts.append(-np.ravel(g.sum(axis=0)))
        return np.concatenate(parts), value, f

    def push_vectors(self, y, ii, jj, g) -> np.ndarray:
        """dw_j/dt with sample i active minus inactive, -v_j g_i x_i, per pair: (k, D)."""
        _, v, _ = self.split(y)
        vj = v[jj] if v.ndim == 1 else np.sum(v[jj] * g[ii], axis=1)
        gi = g[ii] if v.ndim == 1 else 1.0
        return (-(vj * gi))[:, None] * self.pb.X[ii]

    def shift(self, y, dW):
        """y with W + dW, dW (h, D)."""
        W, v, b = self.split(y)
        return self._join(W + dW, v, b)

    @staticmethod
    def _join(W, v, b):
        return np.concatenate([W.ravel(), v.ravel()] + ([np.ravel(b)] if b is not None else []))

    def project_sliding(self, y, sliding):
        """Put every w_j back onto its sliding surfaces <w_j, x_i> = 0 (then the invariant)."""
        W, v, b = self.split(y)
        W = project_off_surfaces(self.pb.X, W, sliding)
        # the invariant projection only rescales w_j, which keeps it on its surfaces
        return self.finalize(self._join(W, v, b))

    def neuron_sizes(self, y) -> np.ndarray:
        """||(w_j, v_j)|| per neuron, the scale of its relative error."""
        W, v, _ = self.split(y)
        return np.sqrt(np.sum(W * W, axis=1) + output_sq_norms(v))

    def neuron_error(self, e, y0, y1) -> np.ndarray:
        """Per-neuron relative size of a state increment e: ||e_j|| / ||theta_j||."""
        eW, ev, _ = self.split(e)
        num = np.sqrt(np.sum(eW * eW, axis=1) + output_sq_norms(ev))
        den = np.maximum(self.neuron_sizes(y0), self.neuron_sizes(y1))
        return num / np.maximum(den, 1e-300)

    def finalize(self, y):
        if self.c0 is None:
            return y
        W, v, b = self.split(y)
        W, v = project_invariants(W, v, self.c0)
        return np.concatenate([W.ravel(), v.ravel()] + ([np.ravel(b)] if b is not None else []))

    def jump(self, y, g_abs):
        """|Change of dtheta_j/dt| (relative to ||theta_j||) when sample i switches neuron j: (n, h)."""
        W, v, _ = self.split(y)
        vabs = np.abs(v) if v.ndim == 1 else np.linalg.norm(v, axis=1)
        rel = vabs / np.maximum(self.neuron_sizes(y), 1e-300)
        if g_abs.ndim == 2:  # logits: |g_i . v_j| <= ||g_i|| ||v_j||
            g_abs = np.linalg.norm(g_abs, axis=1)
        return np.multiply.outer(g_abs * self.pb.xnorm, rel)

    def significance(self, y) -> np.ndarray:
        s = self.neuron_sizes(y)
        return s / max(float(s.max()), 1e-300)


def project_invariants(W, v, c0, max_iter: int = 60):
    """Nearest point with ||v_j||^2 - ||w_j||^2 = c0_j, neuron by neuron.

    The gradient flow of a 1-homogeneous network conserves c_j (THEORY.md section 3); a
    Runge-Kutta step does not. Orthogonal projection onto the level set (Hairer, Lubich &
    Wanner, Geometric Numerical Integration IV.4) keeps the order of the step: with a
    Lagrange multiplier mu_j the nearest point is w_j / (1 + mu_j), v_j / (1 - mu_j), where
    g(mu) = ||v_j||^2 / (1 - mu)^2 - ||w_j||^2 / (1 + mu)^2 - c0_j = 0. g increases from
    -inf to +inf on (-1, 1), so its root is unique; Newton from mu = 0 safeguarded by
    bisection finds it (after an integration step the residual is ~rtol: 2-3 iterations).
    Neurons with w_j = 0 or v_j = 0 are left as they are (no such nearest point).
    """
    vv, ww = output_sq_norms(v), np.sum(W * W, axis=1)
    ok = (vv > 0) & (ww > 0)
    vv, ww, c = vv[ok], ww[ok], np.asarray(c0, dtype=np.float64)[ok]
    mu, lo, hi = np.zeros_like(vv), -np.ones_like(vv), np.ones_like(vv)
    for _ in range(max_iter):
        a, b = 1.0 - mu, 1.0 + mu
        g = vv / a**2 - ww / b**2 - c
        if np.all(np.abs(g) <= 4 * np.finfo(float).eps * (vv / a**2 + ww / b**2 + np.abs(c))):
            break
        lo, hi = np.where(g < 0, mu, lo), np.where(g > 0, mu, hi)
        step = mu - g / (2.0 * vv / a**3 + 2.0 * ww / b**3)
        mu = np.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
    scale_w, scale_v = np.ones(len(ok)), np.ones(len(ok))
    scale_w[ok], scale_v[ok] = 1.0 / (1.0 + mu), 1.0 / (1.0 - mu)
    W = W * scale_w[:, None]
    v = v * scale_v if v.ndim == 1 else v * scale_v[:, None]
    return W, v


_SURFACE_TOL = 1e-9


@dataclass(frozen=True)
class SurfaceGroups:
    """Samples on one line through 0: x_i = sign_i scale_i x_head(i), scale_i > 0.

    They share the switching surface <w, x_i> = 0 of every ReLU neuron, so they switch
    together (those with sign -1 to the other side), and while a neuron slides on the
    surface they act as one constraint with one Filippov multiplier: the field there is
    lambda times the on side's push plus (1 - lambda) times the off side's. Taken one by
    one, the min-norm split of that multiplier among them is arbitrary (for x and -x it
    always puts one of them below 0), and they switched back and forth without end.
    """

    head: np.ndarray   # (n,) index of each sample's representative (its smallest index)
    index: np.ndarray  # (n,) group number 0..m-1 of each sample
    scale: np.ndarray  # (n,) |x_i| / |x_head(i)|
    sign: np.ndarray   # (n,) +1 where x_i points like x_head(i), -1 where opposite
    heads: np.ndarray  # (m,) the representatives

    @property
    def m(self) -> int:
        return self.heads.size

    def spread(self, M: np.ndarray) -> np.ndarray:
        """(n, h) booleans -> True for every sample whose group has a True for that column."""
        G = np.zeros((self.m, M.shape[1]), dtype=np.int64)
        np.add.at(G, self.index, M)
        return G[self.index] > 0

    def pool(self, lam: np.ndarray, force: np.ndarray, sliding: np.ndarray) -> np.ndarray:
        """The group's multiplier for every sliding pair, from the per-sample ones.

        Sample i contributes lambda_i force_i x_i, so the group's sum is M x_head with
        M = sum lambda_i force_i sign_i scale_i. On its surface the group contributes
        lambda_G Pos - (1 - lambda_G) Neg (times x_head; Pos and Neg the summed
        force_i scale_i of the members pointing each way), so lambda_G = (M + Neg) /
        (Pos + Neg); members pointing the other way are on when the group is off and get
        1 - lambda_G. Where Pos + Neg = 0 the surface exerts no push: lambda_G = 1/2.
        """
        ii, jj = np.nonzero(sliding)
        key = self.index[ii] * sliding.shape[1] + jj
        w = (force[ii] if force.ndim == 1 else force[ii, jj]) * self.scale[ii]
        neg = self.sign[ii] < 0
        M = np.bincount(key, weights=lam[ii, jj] * w * self.sign[ii])
        Neg = np.bincount(key, weights=np.where(neg, w, 0.0), minlength=M.size)
        tot = np.bincount(key, weights=w, minlength=M.size)
        lam_g = np.divide(M + Neg, tot, out=np.full(M.shape, 0.5), where=tot != 0)
        out = lam.copy()
        out[ii, jj] = np.where(neg, 1.0 - lam_g[key], lam_g[key])
        return out


def surface_groups(X: np.ndarray, tol: float = _SURFACE_TOL) -> SurfaceGroups | None:
    """Group the rows of X that lie on one line through 0; None if no two do.

    Directions within ``tol`` count as equal: treating two surfaces that far apart as one
    moves a switch by a relative ``tol``, far below any integration tolerance. Rows are
    compared by their direction up to sign, sorted along a fixed random vector (one line
    gives one key), and only runs of keys within ``tol`` are compared, so the usual
    all-distinct case costs one sort. Zero rows never switch and stay alone.
    """
    n, D = X.shape
    norm = np.linalg.norm(X, axis=1)
    Xh = X / np.where(norm > 0, norm, 1.0)[:, None]
    probe = np.random.default_rng(0).standard_normal(D)
    key = Xh @ (probe / np.linalg.norm(probe))
    flip = np.where(key < 0, -1.0, 1.0)
    Xh, key = Xh * flip[:, None], np.abs(key)  # |key_i - key_k| <= |Xh_i - Xh_k|
    order = np.argsort(key, kind="stable")
    near = np.concatenate([[False], np.diff(key[order]) <= tol, [False]]).astype(np.int8)
    edge = np.diff(near)
    head = np.arange(n)
    for a, b in zip(np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)):
        firsts: list[int] = []
        for i in np.sort(order[a : b + 1]):  # the smallest index represents its group
            if norm[i] == 0:
                continue
            match = next((r for r in firsts if np.linalg.norm(Xh[i] - Xh[r]) <= tol), None)
            if match is None:
                firsts.append(int(i))
            else:
                head[i] = match
    if np.all(head == np.arange(n)):
        return None
    heads, index = np.unique(head, return_inverse=True)
    hn = norm[head]
    scale = np.where(hn > 0, norm / np.where(hn > 0, hn, 1.0), 1.0)
    return SurfaceGroups(head, index, scale, flip * flip[head], heads)


def sliding_stacks(X, sliding):
    """The sliding samples of every sliding neuron as a zero-padded stack.

    Returns (ii, jj, cols, slot, Xs): pairs (sample ii, neuron jj) grouped by
    neuron, the sliding neurons ``cols``, each pair's (group, position) ``slot`` and
    Xs (len(cols), max set size, D) with Xs[slot] = X[ii].
    """
    jj, ii = np.nonzero(sliding.T)
    cols, start, m = np.unique(jj, return_index=True, return_counts=True)
    group = np.searchsorted(cols, jj)
    slot = (group, np.arange(jj.size) - start[group])
    Xs = np.zeros((cols.size, int(m.max()), X.shape[1]))
    Xs[slot] = X[ii]
    return ii, jj, cols, slot, Xs


def project_off_surfaces(X, V, sliding) -> np.ndarray:
    """A copy of V (h, D) with each row j orthogonally projected onto <., x_i> = 0 for
    its sliding samples i (``sliding`` (n, h)): the nearest point on all its surfaces."""
    V = V.copy()
    if sliding.any():
        _, _, cols, _, Xs = sliding_stacks(X, sliding)
        coef = min_norm_solve(Xs @ np.swapaxes(Xs, 1, 2), np.einsum("kmd,kd->km", Xs, V[cols]))
        V[cols] -= np.einsum("km,kmd->kd", coef, Xs)
    return V


def filippov_push(pb, B, sliding, force, U=None) -> np.ndarray:
    """Add the sliding samples' pushes to B (h, D) in place; return lambda as (n, h).

    Neuron j moves along B_j (projected off the unit vector U_j when given: the polar
    variables) and must stay on <., x_k> = 0 for its sliding samples Xs: B_j gains
    mu Xs with (P Xs)(P Xs)^T mu = -(P Xs) B_j, minimum-norm. A sample's multiplier is
    lambda = mu / force, force (n,) or (n, h) the push it gives when active; samples
    sharing a surface get their group's (``SurfaceGroups.pool``). The sets are small
    (1-10 samples on the benchmark), so all neurons are solved at once.
    """
    lam = np.zeros(sliding.shape)
    ii, jj, cols, slot, Xs = sliding_stacks(pb.X, sliding)
    Pxs = Xs
    if U is not None:
        Uc = U[cols]
        Pxs = Xs - np.einsum("kmd,kd->km", Xs, Uc)[:, :, None] * Uc[:, None, :]
    rhs = -np.einsum("kmd,kd->km", Pxs, B[cols])
    mu = min_norm_solve(Pxs @ np.swapaxes(Pxs, 1, 2), rhs)
    B[cols] += np.einsum("km,kmd->kd", mu, Xs)
    f = force[ii] if force.ndim == 1 else force[ii, jj]
    lam[ii, jj] = mu[slot] / f
    groups = pb.groups
    # a shared surface has one multiplier: the min-norm split among its samples is
    # arbitrary, so release decisions use the group's
    return lam if groups is None else groups.pool(lam, force, sliding)


def min_norm_solve(G, r, rcond: float = 1e-12):
    """Minimum-norm solution of G x = r for a stack of symmetric PSD G (k, m, m), r (k, m).

    Eigenvalues below rcond * the largest of each matrix count as zero: the batched
    equivalent of ``np.linalg.lstsq(G, r, rcond)``. Zero rows and columns (padding)
    give zero components.
    """
    evals, V = np.linalg.eigh(G)
    cut = rcond * np.max(np.abs(evals), axis=1, keepdims=True)
    keep = evals > cut
    inv = np.divide(1.0, evals, out=np.zeros_like(evals), where=keep)
    coef = inv * np.einsum("kji,kj->ki", V, r)  # V^T r, scaled by the pseudo-inverse
    return np.einsum("kij,kj->ki", V, coef)


class PolarRep(_SwitchPushes):
    """y = (u.ravel(), rho) for balanced neurons; see the module docstring for F."""

    name = "polar"

    def __init__(self, problem: FlowProblem, params: TwoLayerParams):
        if not polar_applicable(problem, params):
            raise ValueError("`variables`='polar' needs a balanced (|v_j| = ||w_j|| > 0), "
                             "single-output pReLU/ReLU network without output bias")
        self.pb = problem
        self.h, self.D = params.W.shape
        self.s = np.sign(params.v).astype(np.float64)
        self.center = params.center
        self.p = problem.relu_power
        self.nU = self.h * self.D

    def pack(self, params: TwoLayerParams) -> np.ndarray:
        r = np.linalg.norm(params.W, axis=1)
        return np.concatenate([(params.W / r[:, None]).ravel(), np.log(r)])

    def split(self, y):
        return y[: self.nU].reshape(self.h, self.D), y[self.nU :]

    def unpack(self, y) -> TwoLayerParams:
        U, rho = self.split(y)
        Uh = U / np.linalg.norm(U, axis=1, keepdims=True)
        r = np.exp(rho)
        return TwoLayerParams(Uh * r[:, None], self.s * r, None,
                              None if self.center is None else self.center.copy())

    def preact(self, y) -> np.ndarray:
        U, _ = self.split(y)
        return self.pb.X @ U.T

    def field(self, y, mask=None, sliding=None):
        """F(y); ``sliding`` (n, h) marks pairs held on <u_j, x_i> = 0 (Filippov, p = 1).

        For a sliding pair the contribution of sample i to neuron j is lambda_ij omega_i x_i
        with lambda chosen so that d<u_j, x_i>/dt = 0 for every sliding i of neuron j
        (a linear solve per neuron); lambda is left in ``self.last_lambda``.
        """
        pb, p = self.pb, self.p
        U, rho = self.split(y)
        Uh = U / np.linalg.norm(U, axis=1, keepdims=True)
        Z = pb.X @ Uh.T
        if mask is None:
            R = np.maximum(Z, 0.0)
            Rq = (Z > 0).astype(np.float64) if p == 1.0 else _power(R, p - 1.0)
            Rp = R if p == 1.0 else Rq * R
        else:
            Rq = (mask if sliding is None else mask & ~sliding).astype(np.float64)
            Rp = Z * Rq
        Rp = _scaled(Rp, pb.xscale)
        f = Rp @ (self.s * np.exp(2.0 * rho))
        value, g = pb.dlogits(f)
        omega = -g
        drho = self.s * (omega @ Rp)
        wq = p * omega if pb.xscale is None else p * omega * pb.xscale
        B = (Rq * wq[:, None]).T @ pb.X
        self.last_lambda = None
        if sliding is not None and sliding.any():
            self.last_lambda = filippov_push(pb, B, sliding, wq, Uh)
        B -= np.sum(B * Uh, axis=1)[:, None] * Uh
        dU = self.s[:, None] * B
        return np.concatenate([dU.ravel(), drho]), value, f

    def push_vectors(self, y, ii, jj, g) -> np.ndarray:
        """du_j/dt with sample i active minus inactive, s_j omega_i P(u_j) x_i, per pair: (k, D)."""
        U, _ = self.split(y)
        D = (-(g[ii] * self.s[jj]))[:, None] * self.pb.X[ii]
        return D - np.sum(D * U[jj], axis=1)[:, None] * U[jj]

    def shift(self, y, dU):
        """y with u_j + dU_j renormalised, dU (h, D)."""
        U, rho = self.split(y)
        U = U + dU
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        return np.concatenate([U.ravel(), rho])

    def project_sliding(self, y, sliding):
        """Put every neuron back onto its sliding surfaces <u_j, x_i> = 0, then renormalise."""
        U, rho = self.split(y)
        U = project_off_surfaces(self.pb.X, U, sliding)
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        return np.concatenate([U.ravel(), rho])

    def neuron_error(self, e, y0, y1, direction_weight: float = 1.0) -> np.ndarray:
        """sqrt((w ||e_u||)^2 + e_rho^2): direction error (weight w) plus relative norm error."""
        eU, erho = self.split(e)
        return np.sqrt(direction_weight**2 * np.sum(eU * eU, axis=1) + erho**2)

    def finalize(self, y):
        """Project u back onto the unit sphere after a step (the flow keeps ||u|| = 1)."""
        U, rho = self.split(y)
        U = U / np.linalg.norm(U, axis=1, keepdims=True)
        return np.concatenate([U.ravel(), rho])

    def jump(self, y, g_abs):
        """|Change of du_j/dt| when sample i switches neuron j (p = 1): |omega_i| ||x_i||, (n, h)."""
        sc = g_abs * self.pb.xnorm if self.pb.xscale is None else g_abs * self.pb.xnorm * self.pb.xscale
        return np.repeat(sc[:, None], self.h, axis=1)

    def significance(self, y) -> np.ndarray:
        _, rho = self.split(y)
        return np.exp(rho - rho.max())


def polar_applicable(problem: FlowProblem, params: TwoLayerParams, rtol: float = 1e-10) -> bool:
    """Whether the polar variables apply: pReLU/ReLU, one output, no bias, balanced neurons."""
    if problem.relu_power is None or params.v.ndim != 1:
        return False
    if problem.model.bias:
        return False
    r = np.linalg.norm(params.W, axis=1)
    if np.any(r <= 0) or not np.all(np.isfinite(r)):
        return False
    return bool(np.all(np.abs(np.abs(params.v) - r) <= rtol * r))
