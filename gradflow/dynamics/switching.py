"""Time order of the pattern switches of one neuron inside one step (ReLU, p = 1).

A step integrated with the activation pattern frozen ends with some samples on the other
side of their surfaces <w_j, x_i> = 0. Each switch changes the neuron's velocity from its
crossing time on, and that change moves the other samples' preactivations: a second
crossing comes earlier or later than the straight line from z0 to z1 says, or not at all,
and a switch that activates a sample whose push points back starts a sliding motion that
changes the later crossings too. Taking each crossing's time from its own straight line
(as if it were the only one) leaves a first-order error per extra crossing. Here the
crossings are replayed in time order on the step's linear model

    z_k(s) = z0_k + s (z1_k - z0_k) + h sum_e (s - s_e)^+ <delta_e, x_k>,   s in [0, 1],

where event e at fraction s_e changes the neuron's velocity by delta_e: the pair's push
(transversal switch), that push times the Filippov multiplier that holds it on its surface
(a new sliding pair), or nothing (chattering mode). Every velocity change is projected so
that the neuron stays on the surfaces it already slides on. The correction of the step end
is h sum_e (1 - s_e) delta_e.
"""
from __future__ import annotations

import numpy as np

NONE, TRANSVERSAL, SLIDE, FLIP = 0, 1, 2, 3


def _keep_sliding(delta, Xs, Js):
    """delta + Js^T mu with <., x_s> = 0 kept for every sliding x_s (min-norm mu)."""
    if Xs.shape[0] == 0:
        return delta
    G = Xs @ Js.T
    mu = np.linalg.lstsq(G, -(Xs @ delta), rcond=1e-12)[0]
    return delta + Js.T @ mu


def order_crossings(Xc, z0, z1, push, slide_ok, h, Xs, Js):
    """Replay one neuron's crossings in time order (see the module docstring).

    Xc (m, D): the candidate samples; z0, z1 (m,): their preactivations at the step start
    and at the frozen step's end (each crossed its surface); push (m, D): the change of the
    neuron's velocity when the sample is active rather than not; slide_ok (m,): a new side
    that points back makes a sliding pair (Filippov) rather than a chattering flip; Xs, Js
    (q, D): samples the neuron already slides on and their pushes.

    Returns (kind (m,), s (m,) crossing fraction, nan for none, correction (D,)).
    """
    m, D = Xc.shape
    z, sig = z0.astype(float).copy(), (z1 - z0).astype(float)
    side0 = np.where(z0 > 0, 1.0, -1.0)
    kind = np.full(m, NONE)
    s_ev = np.full(m, np.nan)
    corr = np.zeros(D)
    s_cur = 0.0
    Xs, Js = np.asarray(Xs, float).reshape(-1, D), np.asarray(Js, float).reshape(-1, D)
    while True:
        free = kind == NONE
        moving = free & (sig * side0 < 0)
        # a pair already on (or, by rounding, past) its surface crosses now
        with np.errstate(divide="ignore", invalid="ignore"):
            t_hit = np.where(z * side0 <= 0, s_cur, s_cur - z / sig)
        ok = (moving | (free & (z * side0 <= 0))) & (t_hit <= 1.0)
        if not ok.any():
            break
        k = int(np.argmin(np.where(ok, t_hit, np.inf)))
        s_k = max(float(t_hit[k]), s_cur)
        z += (s_k - s_cur) * sig
        z[k] = 0.0
        s_cur = s_k
        up = side0[k] < 0  # crossing upward: the sample becomes active
        delta = _keep_sliding(push[k] if up else -push[k], Xs, Js)
        after = sig[k] + h * (Xc[k] @ delta)  # its own slope on the new side
        if after * sig[k] > 0:
            kind[k] = TRANSVERSAL
        elif slide_ok[k]:
            # both sides push toward the surface: the Filippov multiplier lam in [0, 1]
            # makes its slope zero, and later changes must keep it there
            denom = h * (Xc[k] @ delta)
            lam = float(np.clip(-sig[k] / denom, 0.0, 1.0)) if denom != 0 else 0.0
            delta = lam * delta
            kind[k] = SLIDE
            Xs, Js = np.vstack([Xs, Xc[k]]), np.vstack([Js, push[k]])
        else:
            kind[k] = FLIP  # chattering mode: the pattern flips, the field is not modelled
            delta = np.zeros(D)
        sig = sig + h * (Xc @ delta)
        if kind[k] == SLIDE:
            sig[k] = 0.0
        corr += h * (1.0 - s_k) * delta
        s_ev[k] = s_k
    return kind, s_ev, corr
