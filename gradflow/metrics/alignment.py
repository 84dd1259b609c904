"""Alignment metrics of a two-layer network against the subclass geometry (THEORY.md 4-5).

The candidate extremal directions are, in this fixed column order,

    E = [mubar_+, mubar_-, mu_1, ..., mu_K]      (unit rows, shape (K+2, D))

with signs [+1, -1, y_1, ..., y_K] (y_k the label of subclass k). For a neuron
(w_j, v_j) with direction u_j = w_j / ||w_j|| and sign s_j = sign(v_j):

    cosines        c_jm = <u_j, E_m>                          (every m)
    nearest        argmax_m c_jm over the sign-appropriate m (sign(E_m) = s_j)
    contribution   r_j = |v_j| ||w_j||   (||v_j|| ||w_j|| for vector outputs)

Positive neurons (s_j = +1) grow where G is positive and collect at positive
directions, negative neurons at negative ones, so only those are candidates.
For vector outputs the sign is undefined (reported as 0) and all candidates count.

Aggregates (``summarize_alignment``): the dominant neurons (the smallest set
carrying ``mass`` = 99% of sum_j r_j), the fractions of them aligned (cos >
``threshold`` = 0.99) to a subclass centre and to a class average, the covered
centres, the stable rank of W and the participation ratio of r, the
alignment-phase end time and the fitting-phase behaviour.

Everything here is numpy only: no plotting, no simulation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._validate import check_array, check_real
from ..linalg import participation_ratio, stable_rank
from .trajectory import Trajectory


def column_names(K: int) -> list[str]:
    """Names of the extremal-direction columns: ['mubar_+', 'mubar_-', 'mu_1', ..., 'mu_K']."""
    return ["mubar_+", "mubar_-"] + [f"mu_{k + 1}" for k in range(K)]


def extremal_directions(centres, subclass_labels) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions E (K+2, D) = [mubar_+, mubar_-, mu_1..mu_K] and their signs (K+2,).

    mubar_+ = mu_+ / ||mu_+|| with mu_+ the sum of the positive centres (mubar_-
    likewise); each mu_k is normalised too, so non-unit centres are allowed.
    """
    C = check_array("centres", centres, ndim=2).astype(np.float64)
    lab = check_array("subclass_labels", subclass_labels, ndim=1)
    if lab.shape[0] != C.shape[0]:
        raise ValueError(f"`subclass_labels` must have length K={C.shape[0]}, got {lab.shape[0]}")
    if not np.all((lab == 1) | (lab == -1)):
        raise ValueError(f"`subclass_labels` must hold +1 or -1 per centre, got {lab}")
    pos, neg = lab > 0, lab < 0
    if not pos.any() or not neg.any():
        raise ValueError("`subclass_labels` must contain both +1 and -1 subclasses")
    rows = [C[pos].sum(axis=0), C[neg].sum(axis=0), *C]
    E = np.stack(rows)
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    if not np.all(norms > 0):  # a zero centre (or class sum) has no direction: cosines NaN
        raise ValueError("`centres` must be non-zero, and each class's centres must not sum "
                         "to zero")
    E = E / norms
    signs = np.concatenate([[1.0, -1.0], np.sign(lab).astype(np.float64)])
    return E, signs


def unit_directions(W) -> np.ndarray:
    """Rows w_j / ||w_j|| (zero rows stay zero), for W of shape (..., h, D)."""
    W = np.asarray(W, dtype=np.float64)
    n = np.linalg.norm(W, axis=-1, keepdims=True)
    return np.divide(W, n, out=np.zeros_like(W), where=n > 0)


def direction_cosines(W, centres, subclass_labels) -> np.ndarray:
    """c_jm = <w_j/||w_j||, E_m>, shape (..., h, K+2), columns as ``column_names``."""
    E, _ = extremal_directions(centres, subclass_labels)
    return unit_directions(W) @ E.T


def neuron_signs(v) -> np.ndarray:
    """sign(v), elementwise and of v's shape: the neuron signs s_j for scalar outputs
    (..., h). For vector outputs (..., h, C) these are the output weights' signs; a neuron
    has no single sign there (``nearest_extremal`` then uses 0)."""
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v)


def contributions(W, v, *, vector_output: bool | None = None) -> np.ndarray:
    """r_j = |v_j| ||w_j|| (||v_j|| ||w_j|| for vector outputs), shape (..., h).

    For a 1-homogeneous neuron it bounds the neuron's output on unit inputs,
    which is why it measures how much a neuron matters.
    """
    W = np.asarray(W, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if vector_output is None:
        vector_output = v.ndim == W.ndim
    vnorm = np.linalg.norm(v, axis=-1) if vector_output else np.abs(v)
    return vnorm * np.linalg.norm(W, axis=-1)


def _signs_for(W, v) -> np.ndarray:
    W, v = np.asarray(W), np.asarray(v)
    if v.ndim == W.ndim:  # vector outputs: sign undefined
        return np.zeros(v.shape[:-1])
    return np.sign(v)


def nearest_extremal(W, v, centres, subclass_labels) -> tuple[np.ndarray, np.ndarray]:
    """Nearest sign-appropriate extremal direction of each neuron and its cosine.

    Returns (index, cosine), both of shape (..., h): ``index`` into the columns
    [mubar_+, mubar_-, mu_1..mu_K]; candidates are the directions whose sign
    equals sign(v_j) (all of them when the sign is 0).
    """
    E, esign = extremal_directions(centres, subclass_labels)
    cos = unit_directions(W) @ E.T
    s = _signs_for(W, v)
    allowed = (esign == s[..., None]) | (s[..., None] == 0)
    masked = np.where(allowed, cos, -np.inf)
    idx = np.argmax(masked, axis=-1)
    return idx, np.take_along_axis(cos, idx[..., None], axis=-1)[..., 0]


def dominant_neurons(contrib, mass: float = 0.99) -> np.ndarray:
    """Indices of the smallest set of neurons carrying ``mass`` of sum_j r_j, largest first.

    Sorting r in decreasing order, it is the first m with r_(1) + ... + r_(m)
    >= mass * sum_j r_j. All-zero contributions give an empty set.
    """
    mass = check_real("mass", mass, 0.0, 1.0, lo_open=True)
    r = check_array("contrib", contrib, ndim=1).astype(np.float64)
    if np.any(r < 0):
        raise ValueError("`contrib` must be >= 0 (contributions |v_j| ||w_j||), "
                         f"got min {r.min():.4g}")
    total = r.sum()
    if total <= 0:
        return np.zeros(0, dtype=int)
    order = np.argsort(-r, kind="stable")
    cum = np.cumsum(r[order])
    # A relative tolerance so that mass=1 (or 0.99 hit exactly) is not lost to rounding.
    m = int(np.searchsorted(cum, mass * total * (1 - 1e-12), side="left")) + 1
    return order[: min(m, r.size)]


def heatmap_order(cos, signs, contrib) -> np.ndarray:
    """Row order for a cosine heatmap of neurons (the reference paper's panels c, d).

    Positive neurons first, then negative, then sign 0; within a sign grouped by
    the column of their largest cosine (mubar_+ and mubar_- before the centres),
    and within a group by decreasing contribution. Returns a permutation of rows.
    """
    cos = np.asarray(cos, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.float64)
    contrib = np.asarray(contrib, dtype=np.float64)
    sign_key = np.where(signs > 0, 0, np.where(signs < 0, 1, 2))
    col = np.argmax(cos, axis=1)
    return np.lexsort((-contrib, col, sign_key))


# ---- time-resolved quantities ---------------------------------------------

def alignment_end(traj: Trajectory, *, loss_fraction: float = 0.9,
                  output_level: float = 0.1) -> tuple[float, str]:
    """End of the alignment phase and how it was obtained: (time, method).

    1. 'given': ``traj.alignment_end_time`` (set by the ODE engine) when present.
    2. 'loss': otherwise, when the loss is recorded, the first time
       L(t) <= loss_fraction * L(t_0). While f ~ 0 the loss sits at l(0); it
       starts to fall exactly when the output becomes O(1), which ends the
       alignment phase (THEORY.md section 4).
    3. 'output-bound': without a loss, the first time B(t) = sum_j r_j(t)
       reaches ``output_level``; B bounds |f(x)| for ||x|| <= 1 for pReLU.
    The crossing time is interpolated linearly in log t between the bracketing
    snapshots (in t when t_0 <= 0). Returns (nan, 'not-reached') if never crossed.
    """
    check_real("loss_fraction", loss_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    check_real("output_level", output_level, 0.0, lo_open=True)
    if traj.alignment_end_time is not None:
        return float(traj.alignment_end_time), "given"
    if traj.loss is not None:
        if not np.isfinite(traj.loss[0]):  # every later crossing test would be False
            raise ValueError(f"the trajectory's initial loss is {traj.loss[0]}; the loss "
                             "criterion needs a finite one")
        # Crossing of log L below log(fraction * L0), i.e. a decreasing signal.
        signal = -np.log(np.maximum(traj.loss, 1e-300))
        level = -np.log(loss_fraction * traj.loss[0])
        method = "loss"
    else:
        signal = np.log(np.maximum(contributions(traj.W, traj.v).sum(axis=1), 1e-300))
        level = np.log(output_level)
        method = "output-bound"
    t_cross = _first_crossing(traj.t, signal, level)
    return t_cross, (method if np.isfinite(t_cross) else "not-reached")


def _first_crossing(t: np.ndarray, signal: np.ndarray, level: float) -> float:
    """First time the piecewise-linear signal reaches level (interpolated), nan if never."""
    hit = np.nonzero(signal >= level)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(t[0])
    x = np.log(t[i - 1:i + 1]) if t[i - 1] > 0 else t[i - 1:i + 1]
    s0, s1 = signal[i - 1], signal[i]
    frac = (level - s0) / (s1 - s0)
    xc = x[0] + frac * (x[1] - x[0])
    return float(np.exp(xc) if t[i - 1] > 0 else xc)


def fitting_phase(traj: Trajectory, t_align: float) -> dict:
    """Loss decay and norm growth after the alignment phase (t >= t_align).

    Returns ``loss_align``, ``loss_end``, ``loss_loglog_slope`` (least-squares
    slope of log L against log t over the second half, in log t, of the fitting
    phase; -1 for the L ~ 1/t decay of the exponential loss on separable data),
    ``norm_align``, ``norm_end``, ``norm_growth`` (ratio end / align) and
    ``norm_log_slope`` (slope of log ||theta|| against log t over the same window).
    Values are nan when the phase has fewer than 3 snapshots.
    """
    out = dict(loss_align=np.nan, loss_end=np.nan, loss_loglog_slope=np.nan,
               norm_align=np.nan, norm_end=np.nan, norm_growth=np.nan, norm_log_slope=np.nan)
    if not np.isfinite(t_align):
        return out
    norm = traj.param_norm()
    ia = traj.index_at_time(t_align)
    out.update(norm_align=float(norm[ia]), norm_end=float(norm[-1]),
               norm_growth=float(norm[-1] / norm[ia]) if norm[ia] > 0 else np.nan)
    if traj.loss is not None:
        out.update(loss_align=float(traj.loss[ia]), loss_end=float(traj.loss[-1]))
    sel = np.nonzero((traj.t >= max(t_align, 1e-300)) & (traj.t > 0))[0]
    if sel.size >= 3:
        lt = np.log(traj.t[sel])
        late = sel[lt >= 0.5 * (lt[0] + lt[-1])]
        if late.size >= 2:
            x = np.log(traj.t[late])
            out["norm_log_slope"] = float(np.polyfit(x, np.log(norm[late]), 1)[0])
            if traj.loss is not None and np.all(traj.loss[late] > 0):
                out["loss_loglog_slope"] = float(np.polyfit(x, np.log(traj.loss[late]), 1)[0])
    return out


@dataclass(frozen=True)
class NeuronMetrics:
    """Per-neuron, per-time metrics. Arrays have leading shape (T, h).

    columns: names of the K+2 extremal directions, column_signs their signs;
    cosines (T, h, K+2); nearest (T, h) column index of the nearest
    sign-appropriate extremal direction; nearest_cos (T, h) its cosine;
    contribution (T, h) = |v_j| ||w_j||; sign (T, h) = sign(v_j) (0 for vector outputs).
    """

    t: np.ndarray
    columns: list
    column_signs: np.ndarray
    cosines: np.ndarray
    nearest: np.ndarray
    nearest_cos: np.ndarray
    contribution: np.ndarray
    sign: np.ndarray

    def own_average_cos(self) -> np.ndarray:
        """Cosine with the neuron's own class average mubar_{sign(v_j)}, (T, h); nan if sign 0."""
        c = np.where(self.sign > 0, self.cosines[..., 0], self.cosines[..., 1])
        return np.where(self.sign == 0, np.nan, c)

    def nearest_centre_cos(self) -> np.ndarray:
        """Largest cosine with a sign-appropriate subclass centre mu_k (averages excluded), (T, h)."""
        cs = self.column_signs[2:]
        allowed = (cs == self.sign[..., None]) | (self.sign[..., None] == 0)
        return np.max(np.where(allowed, self.cosines[..., 2:], -np.inf), axis=-1)


def neuron_metrics(traj: Trajectory, centres=None, subclass_labels=None) -> NeuronMetrics:
    """Cosines, nearest extremal direction, contribution and sign of every neuron at every time."""
    centres, labels = _geometry(traj, centres, subclass_labels)
    E, esign = extremal_directions(centres, labels)
    cos = unit_directions(traj.W) @ E.T
    idx, ncos = nearest_extremal(traj.W, traj.v, centres, labels)
    return NeuronMetrics(traj.t, column_names(centres.shape[0]), esign, cos, idx, ncos,
                         contributions(traj.W, traj.v), _signs_for(traj.W, traj.v))


def _geometry(traj: Trajectory, centres, subclass_labels):
    centres = traj.centres if centres is None else centres
    labels = traj.subclass_labels if subclass_labels is None else subclass_labels
    if centres is None or labels is None:
        raise ValueError("`centres` and `subclass_labels` are needed: pass them or store them "
                         "in the Trajectory")
    return np.asarray(centres, dtype=np.float64), np.asarray(labels, dtype=np.float64)


@dataclass(frozen=True)
class AlignmentSummary:
    """Aggregate alignment metrics at one snapshot (see ``summarize_alignment``)."""

    time: float
    n_neurons: int
    dominant: list
    n_dominant: int
    frac_aligned_centres: float
    frac_aligned_averages: float
    covered_centres: list
    n_covered_centres: int
    stable_rank_W: float
    participation_ratio: float
    alignment_end_time: float
    alignment_end_method: str
    fitting: dict

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_alignment(traj: Trajectory, centres=None, subclass_labels=None, *,
                        index: int = -1, threshold: float = 0.99,
                        mass: float = 0.99) -> AlignmentSummary:
    """Aggregate alignment metrics of the snapshot ``index`` (default: the last).

    dominant: ``dominant_neurons(r, mass)``; a dominant neuron is aligned to a
    subclass centre if its cosine with some sign-appropriate mu_k exceeds
    ``threshold``, and to a class average if its cosine with mubar_{sign(v_j)}
    does. covered_centres: 0-based k with at least one such aligned dominant
    neuron. stable_rank_W: ||W||_F^2/||W||_2^2; participation_ratio of r.
    """
    check_real("threshold", threshold, -1.0, 1.0)
    centres, labels = _geometry(traj, centres, subclass_labels)
    n_snap = len(traj.t)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not -n_snap <= index < n_snap:
        raise ValueError(f"`index` must be an integer in [-{n_snap}, {n_snap - 1}] "
                         f"(the trajectory has {n_snap} snapshots), got {index!r}")
    W, v = traj.at(index)
    r = contributions(W, v)
    dom = dominant_neurons(r, mass)
    E, esign = extremal_directions(centres, labels)
    cos = unit_directions(W[dom]) @ E.T
    s = _signs_for(W, v)[dom]
    ok = (esign[None, :] == s[:, None]) | (s[:, None] == 0)
    centre_hit = (cos[:, 2:] > threshold) & ok[:, 2:]
    own_avg = np.where(s > 0, cos[:, 0], np.where(s < 0, cos[:, 1], np.maximum(cos[:, 0],
                                                                                cos[:, 1])))
    n_dom = int(dom.size)
    covered = sorted(int(k) for k in np.nonzero(centre_hit.any(axis=0))[0])
    t_end, method = alignment_end(traj)
    return AlignmentSummary(
        time=float(traj.t[index]), n_neurons=traj.width, dominant=[int(i) for i in dom],
        n_dominant=n_dom,
        frac_aligned_centres=float(centre_hit.any(axis=1).mean()) if n_dom else np.nan,
        frac_aligned_averages=float((own_avg > threshold).mean()) if n_dom else np.nan,
        covered_centres=covered, n_covered_centres=len(covered),
        stable_rank_W=stable_rank(W if W.ndim == 2 else W.reshape(W.shape[0], -1)),
        participation_ratio=participation_ratio(r),
        alignment_end_time=t_end, alignment_end_method=method,
        fitting=fitting_phase(traj, t_end),
    )
