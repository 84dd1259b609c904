"""Exact ReLU alignment flow: per-neuron great-circle motion between pattern changes.

While the network output is small the loss weights omega_i = -dL/df_i are (almost)
constant. For a balanced ReLU neuron (p = 1, polar variables u_j on the unit sphere,
rho_j = log ||w_j||) with a fixed activation pattern the flow is then

    du/dt = P_perp(u) a,    drho/dt = <u, a>,    a = s_j sum_{i active} omega_i x_i,

the gradient flow of <u, a> on the sphere. With theta the angle between u and
a_hat = a / |a| and e the unit vector of u - <u, a_hat> a_hat, u stays on the great
circle u = cos(theta) a_hat + sin(theta) e and

    tan(theta(t)/2) = tan(theta(0)/2) exp(-|a| t),
    rho(t) - rho(0) = log(sin theta(0) / sin theta(t))
                    = |a| t + log((1 + q(t)^2) / (1 + q(0)^2)),   q = tan(theta/2).

Sample i switches at the zero of z_i = cos(theta) A_i + sin(theta) B_i (A = <a_hat, x_i>,
B = <e, x_i>), i.e. at the unique positive root q* of A q^2 - 2 B q - A = 0; it is
reached iff 0 < q* < q(0), at t* = log(q(0)/q*) / |a|. Each neuron therefore moves
from one switch to the next in closed form. A switch whose new side's field points
back to the surface (<x_i, a_new> has the old side's sign) starts Filippov sliding:
the neuron then moves on the sphere inside the hyperplanes x_k^perp of its sliding
samples, toward the projection a_S of a_base (the field without the sliding samples)
onto their orthogonal complement. Because <x_k, u> = 0 there, the multipliers
lambda_k = mu_k / (s omega_k) of a_S = a_base + sum_k mu_k x_k do not depend on u: they
only change at the neuron's next switch, where a pair whose lambda left (0, 1) is
released to that side. Samples on one line through 0 (duplicates, x and 2x, x and -x)
share their switching surface and are advanced as one sample (``exact_relu_step``): one
at a time, the split of the surface's multiplier among them is arbitrary, and on
duplicated data they switched back and forth without end.

The only approximation is omega held at its value at the start of a macro step; its
relative change is bounded by the growth of max_i |f_i| (exponential loss:
omega_i = y_i exp(-y_i f_i) / n), which the caller keeps below a threshold.
Cost: two matrix-vector products with X (n x D) per switch, i.e. 1/h of one full
gradient evaluation (two n x D x h products).
"""
from __future__ import annotations

import math

import numpy as np

from ._base import StepFailure

_MAX_EVENTS = 100_000  # per neuron and macro step: a guard against Zeno-like cycling
# |<a_hat, x_i>| / |x_i| below this is rounding (|a_hat| = 1; a D-term dot product)
_A_TINY = 1e-12


def _project_sliding(a_base, Xs, s, om_s):
    """a_S = a_base + mu @ Xs with Xs a_S = 0; returns (a_S, lambda = mu / (s omega_S))."""
    mu = np.linalg.lstsq(Xs @ Xs.T, -(Xs @ a_base), rcond=1e-12)[0]
    return a_base + mu @ Xs, mu / (s * om_s)


def _advance_neuron(u, rho, s, X, xnorm, om, act, sl, H, a_const):
    """Advance one neuron exactly by time H (patterns ``act``, ``sl`` updated in place).

    Returns (u, rho, number of switches). ``om`` are the (scaled) loss weights, ``xnorm``
    the row norms of X, ``a_const`` a push that does not depend on the pattern.
    """
    t, events = 0.0, 0
    a_base = s * (om[act] @ X[act]) + a_const
    while True:
        if events > _MAX_EVENTS:
            raise StepFailure(f"more than {_MAX_EVENTS} pattern switches of one neuron "
                              "in one exact alignment step")
        a = a_base
        if sl.any():
            idx = np.nonzero(sl)[0]
            a, lam = _project_sliding(a_base, X[idx], s, om[idx])
            lo, hi = lam <= 0.0, lam >= 1.0
            if lo.any() or hi.any():  # released pairs join the side their lambda points to
                sl[idx[lo | hi]] = False
                act[idx[hi]] = True
                a_base = a_base + s * (om[idx[hi]] @ X[idx[hi]])
                events += 1
                continue
        na = float(np.linalg.norm(a))
        if na == 0.0:
            return u, rho, events
        a_hat = a / na
        c0 = float(u @ a_hat)
        e = u - c0 * a_hat
        sn = float(np.linalg.norm(e))
        if sn <= 1e-15:  # u is at the attractor a_hat: only the norm grows
            return a_hat, rho + na * (H - t), events
        e = e / sn
        q0 = sn / (1.0 + c0) if c0 > -0.5 else (1.0 - c0) / sn  # tan(theta/2), stable
        A, B = X @ a_hat, X @ e
        # |A_i| at rounding level: a_hat (almost) inside the surface, e.g. right after a
        # release with lambda ~ 0; z_i then stays within that level of 0, and acting on
        # the sign of rounding noise would switch the sample back and forth forever
        cand = ~sl & (act != (A > 0.0)) & (np.abs(A) > _A_TINY * xnorm)
        t_next, i_next = math.inf, -1
        if cand.any():
            ii = np.nonzero(cand)[0]
            Ai, Bi = A[ii], B[ii]
            sg = np.sign(Ai)
            r = np.hypot(Ai, Bi)
            # positive root of A q^2 - 2 B q - A = 0, written to avoid cancellation
            qs = np.where(sg * Bi >= 0.0, (Bi + sg * r) / Ai, Ai / (sg * r - Bi))
            ts = np.log(q0 / qs) / na
            k = int(np.argmin(ts))
            t_next, i_next = max(float(ts[k]), 0.0), int(ii[k])
        rem = H - t
        dt = min(t_next, rem)
        q = q0 * math.exp(-na * dt)
        cq, sq = (1.0 - q * q) / (1.0 + q * q), 2.0 * q / (1.0 + q * q)
        u = cq * a_hat + sq * e
        rho = rho + na * dt + math.log((1.0 + q * q) / (1.0 + q0 * q0))
        if t_next >= rem:
            return u, rho, events
        t += dt
        # switch of sample i: it goes to the side sign(A_i)
        i = i_next
        events += 1
        going_on = A[i] > 0.0
        xi = X[i]
        delta = s * om[i] * xi
        a_new = a_base + delta if going_on else a_base - delta
        if (float(xi @ a_new) > 0.0) == going_on:  # transversal: the new side carries on
            act[i] = going_on
            a_base = a_new
        else:  # Filippov sliding on <u, x_i> = 0: put u exactly on the surface
            if act[i]:
                a_base = a_base - delta
            act[i] = False
            sl[i] = True
            u = u - (float(u @ xi) / float(xi @ xi)) * xi
            u = u / np.linalg.norm(u)


def exact_relu_step(U, rho, s, X, omega, mask, S, H, groups=None):
    """Advance all neurons exactly by H with constant loss weights (module docstring).

    U (h, D) unit rows, rho (h,), s (h,) signs, X (n, D), omega (n,) the loss weights
    (times the input scale), mask (n, h) active pairs, S (n, h) sliding pairs.
    ``groups`` (``fields.SurfaceGroups``): samples on one line through 0 share a
    switching surface and are advanced as one sample x_head: on its positive side it
    pushes with Pos = sum of omega_i scale_i over the members pointing like x_head, on
    the other side with -Neg (the others), i.e. a constant -Neg x_head plus a sample of
    weight Pos + Neg. Each group's pattern is its head's.
    Returns (U, rho, mask, S, switches), all new arrays.
    """
    U, rho = U.copy(), rho.copy()
    n = X.shape[0]
    if groups is None:
        heads, index, pos = np.arange(n), None, np.ones(n, dtype=bool)
        Xg, omg, const = X, omega, np.zeros(X.shape[1])
    else:
        heads, index, pos = groups.heads, groups.index, groups.sign > 0
        Xg = X[heads]
        omg = np.bincount(index, weights=omega * groups.scale, minlength=heads.size)
        const = omega[~pos] @ X[~pos]  # = -sum_g Neg_g x_head(g): the off sides' push
    mask, S = mask[heads].copy(), S[heads].copy()
    # a surface whose two sides push alike has no switch to make: it only needs its side
    live = omg != 0.0
    Xl, oml = Xg[live], omg[live]
    xnorm = np.linalg.norm(Xl, axis=1)
    switches = 0
    for j in range(U.shape[0]):
        act, sl = mask[live, j] & ~S[live, j], S[live, j].copy()
        U[j], rho[j], ev = _advance_neuron(U[j], float(rho[j]), float(s[j]), Xl, xnorm,
                                           oml, act, sl, H, s[j] * const)
        mask[live, j], S[live, j] = act, sl
        switches += ev
    if not live.all():
        mask[~live] = Xg[~live] @ U.T > 0.0
        S[~live] = False
    if index is not None:
        mask, S = mask[index], S[index]
        mask = np.where(pos[:, None], mask, ~mask & ~S)  # opposite members: the other side
    return U, rho, mask, S, switches
