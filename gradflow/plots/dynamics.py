"""Figures of the training dynamics, drawn from a saved ``Trajectory`` only.

Every function takes a loaded trajectory (or plain arrays), never a model or
data set, so a figure can always be redrawn without re-running a simulation.
Each returns the matplotlib Figure; with ``out`` given it also writes
``<out>.png`` and ``<out>.pdf``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..metrics.alignment import (
    alignment_end,
    column_names,
    dominant_neurons,
    extremal_directions,
    heatmap_order,
    neuron_metrics,
    unit_directions,
)
from ..metrics.trajectory import Trajectory
from .style import (
    CMAP_COSINE,
    NEG,
    POS,
    SHADE_ALIGN,
    mark_time,
    new_figure,
    paper_style,
    save_figure,
)

PathLike = str | os.PathLike


def tex_column(name: str) -> str:
    """Mathtext label of an extremal-direction column: 'mubar_+' -> '$\\bar\\mu_+$'."""
    if name.startswith("mubar_"):
        return rf"$\bar\mu_{name[-1]}$"
    if name.startswith("mu_"):
        return rf"$\mu_{{{name[3:]}}}$"
    return name


def _require_geometry(traj: Trajectory) -> None:
    if traj.centres is None or traj.subclass_labels is None:
        raise ValueError("`traj` must carry `centres` and `subclass_labels` for this figure "
                         "(use Trajectory.with_geometry)")


def _finish(fig, out: PathLike | None):
    if out is not None:
        save_figure(fig, out)
    return fig


def _positive_times(traj: Trajectory) -> np.ndarray:
    """Indices with t > 0 (log-time axes cannot show t = 0)."""
    return np.nonzero(traj.t > 0)[0]


# ---- neuron trajectories ---------------------------------------------------

def plot_neuron_trajectories(traj: Trajectory, *, neurons: Sequence[int] | None = None,
                             max_neurons: int = 16, out: PathLike | None = None):
    """Cosine of each dominant neuron to its nearest centre and to its class average vs log t.

    Top: max_k <u_j(t), mu_k> over sign-appropriate centres. Bottom:
    <u_j(t), mubar_{sign v_j}>. Neurons default to the final dominant set
    (largest first, at most ``max_neurons``); the alignment end is marked.
    """
    _require_geometry(traj)
    nm = neuron_metrics(traj)
    if neurons is None:
        neurons = dominant_neurons(nm.contribution[-1])[:max_neurons]
    neurons = np.asarray(neurons, dtype=int)
    idx = _positive_times(traj)
    t = traj.t[idx]
    t_end, method = alignment_end(traj)
    K1 = int(np.sum(traj.subclass_labels > 0))
    with paper_style():
        fig, (ax1, ax2) = new_figure("column", 0.95, nrows=2, sharex=True)
        cc = nm.nearest_centre_cos()[idx]
        ca = nm.own_average_cos()[idx]
        for j in neurons:
            col = POS if nm.sign[-1, j] > 0 else NEG
            ax1.plot(t, cc[:, j], color=col, lw=0.8, alpha=0.8)
            ax2.plot(t, ca[:, j], color=col, lw=0.8, alpha=0.8)
        for ax in (ax1, ax2):
            mark_time(ax, t_end)
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.axhline(1.0, color="0.75", lw=0.5, zorder=0)
        ax1.set_ylabel(r"cos to nearest $\mu_k$")
        ax2.set_ylabel(r"cos to own $\bar\mu_\pm$")
        ax2.set_xlabel("time $t$ (gradient-flow units)")
        # Where a neuron sitting at the class average mubar_+ would read on the top panel.
        K2 = traj.subclass_labels.size - K1
        ax1.axhline(1 / np.sqrt(K1), color=POS, lw=0.6, ls="--", zorder=0)
        ax1.axhline(1 / np.sqrt(K2), color=NEG, lw=0.6, ls="--", zorder=0)
        handles = [Line2D([], [], color=POS, label="positive neurons"),
                   Line2D([], [], color=NEG, label="negative neurons"),
                   Line2D([], [], color="0.3", ls=":", label=f"alignment end ({method})"),
                   Line2D([], [], color="0.5", ls="--", lw=0.6,
                          label=r"at $\bar\mu_\pm$: $1/\sqrt{K_{1,2}}$")]
        ax1.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.02), ncols=2,
                   borderaxespad=0)
        return _finish(fig, out)


# ---- directions projected on a plane ---------------------------------------

def plane_basis(traj: Trajectory, plane) -> tuple[np.ndarray, tuple[str, str]]:
    """Orthonormal basis (2, D) of a plane and its axis labels.

    ``plane`` is a pair of column names ('mubar_+', 'mu_3', ...), a pair of
    0-based centre indices, or a (2, D) array. The second vector is
    orthogonalised against the first (Gram-Schmidt).
    """
    _require_geometry(traj)
    E, _ = extremal_directions(traj.centres, traj.subclass_labels)
    names = column_names(traj.centres.shape[0])
    if isinstance(plane, np.ndarray) and plane.shape == (2, traj.dim):
        a, b = plane.astype(np.float64)
        labels = ("direction 1", "direction 2")
    else:
        if len(plane) != 2:
            raise ValueError(f"`plane` must be two column names, two centre indices or a "
                             f"(2, D) array, got {plane!r}")
        vecs, labels = [], []
        for item in plane:
            if isinstance(item, str):
                if item not in names:
                    raise ValueError(f"`plane` entries must be one of {names}, got {item!r}")
                m = names.index(item)
            elif isinstance(item, (int, np.integer)) and 0 <= item < len(names) - 2:
                m = int(item) + 2
            else:
                raise ValueError(f"`plane` centre indices must be in [0, "
                                 f"{len(names) - 3}], got {item!r}")
            vecs.append(E[m])
            labels.append(tex_column(names[m]))
        a, b = vecs
        labels = tuple(labels)
    e1 = a / np.linalg.norm(a)
    b = b - (b @ e1) * e1
    nb = np.linalg.norm(b)
    if nb < 1e-12:
        raise ValueError("`plane` vectors are parallel; choose two independent directions")
    return np.stack([e1, b / nb]), labels


def _centre_points(traj: Trajectory, basis: np.ndarray):
    """Projected extremal directions, coincident ones merged: [(xy, label, sign)]."""
    E, esign = extremal_directions(traj.centres, traj.subclass_labels)
    names = column_names(traj.centres.shape[0])
    P = E @ basis.T
    groups: list[tuple[np.ndarray, list[str], float]] = []
    for m in range(len(names)):
        if np.linalg.norm(P[m]) < 0.05:  # projects (almost) to the origin: orthogonal to plane
            continue
        for g in groups:
            if np.allclose(g[0], P[m], atol=1e-6):
                g[1].append(names[m])
                break
        else:
            groups.append((P[m], [names[m]], esign[m]))
    out = []
    for xy, nms, s in groups:
        if len(nms) > 2 and all(n.startswith("mu_") for n in nms):
            label = rf"$\mu_{{{nms[0][3:]}}}..\mu_{{{nms[-1][3:]}}}$"
        else:
            label = ", ".join(tex_column(n) for n in nms)
        out.append((xy, label, s))
    return out


def _default_times(traj: Trajectory, t_end: float, n: int = 4) -> list[float]:
    idx = _positive_times(traj)
    t1 = traj.t[idx[0]] if idx.size else traj.t[0]
    tl = traj.t[-1]
    if not np.isfinite(t_end) or t_end <= t1:
        return list(np.geomspace(t1, tl, n))
    return [t1, float(np.sqrt(t1 * t_end)), float(t_end), float(tl)][:n]


def draw_directions(ax, traj: Trajectory, index: int, basis: np.ndarray, labels,
                    centre_points=None, show_centre_labels: bool = True) -> None:
    """Draw neurons' unit directions projected on the plane, at snapshot ``index``."""
    U = unit_directions(traj.W[index]) @ basis.T
    s = np.sign(traj.v[index]) if traj.v.ndim == 2 else np.zeros(traj.width)
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="0.75", lw=0.6, zorder=0)
    ax.axhline(0, color="0.88", lw=0.5, zorder=0)
    ax.axvline(0, color="0.88", lw=0.5, zorder=0)
    ax.scatter(U[s > 0, 0], U[s > 0, 1], s=7, color=POS, alpha=0.75, lw=0, zorder=2)
    ax.scatter(U[s < 0, 0], U[s < 0, 1], s=7, color=NEG, alpha=0.75, lw=0, zorder=2)
    ax.scatter(U[s == 0, 0], U[s == 0, 1], s=7, color="0.4", alpha=0.75, lw=0, zorder=2)
    for xy, lab, _ in centre_points or []:
        # Hollow stars under the neurons, so neurons sitting exactly on a centre stay visible.
        ax.scatter(*xy, marker="*", s=70, facecolor="none", edgecolor="k", lw=0.6, zorder=1)
        if show_centre_labels:
            r = xy / max(np.linalg.norm(xy), 1e-9)
            # Labels outside the rim go radially outward; inner ones sideways (clockwise),
            # so they never sit on top of the rim points on the same ray.
            d = r if np.linalg.norm(xy) > 0.9 else np.array([r[1], -r[0]])
            if abs(d[0]) > abs(d[1]) + 1e-9:
                ha, va = ("left" if d[0] > 0 else "right"), "center"
            elif abs(d[1]) > abs(d[0]) + 1e-9:
                ha, va = "center", ("bottom" if d[1] > 0 else "top")
            else:
                ha, va = ("left" if d[0] > 0 else "right"), ("bottom" if d[1] > 0 else "top")
            ax.annotate(lab, xy, xytext=6 * d, textcoords="offset points", fontsize=6.5,
                        ha=ha, va=va, zorder=4)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])


def plot_neuron_directions(traj: Trajectory, *, plane=("mubar_+", "mubar_-"),
                           times: Sequence[float] | None = None, out: PathLike | None = None):
    """Neuron directions u_j = w_j/||w_j|| projected on a 2-D plane at several times.

    Points are (<u_j, e_1>, <u_j, e_2>) for an orthonormal basis (e_1, e_2) of
    ``plane``; they lie in the unit disc, on its rim when u_j lies in the plane.
    Stars mark the projected extremal directions (coincident ones share a label;
    directions orthogonal to the plane project to the origin and are not drawn).
    Default times: first snapshot, sqrt(t_1 t_align), t_align and the end.
    """
    basis, labels = plane_basis(traj, plane)
    t_end, _ = alignment_end(traj)
    times = _default_times(traj, t_end) if times is None else list(times)
    pts = _centre_points(traj, basis)
    n = len(times)
    with paper_style():
        fig, axes = new_figure("double", 0.29 if n <= 4 else 0.24, ncols=n, sharey=True)
        axes = np.atleast_1d(axes)
        for k, (ax, tt) in enumerate(zip(axes, times)):
            i = traj.index_at_time(tt)
            draw_directions(ax, traj, i, basis, labels, pts)
            tag = " (alignment end)" if np.isfinite(t_end) and np.isclose(tt, t_end) else ""
            ax.set_title(f"$t$ = {traj.t[i]:.3g}{tag}", fontsize=7)
            if k == 0:
                ax.set_ylabel(rf"$\langle u_j, e_2\rangle$,  $e_2$ = {labels[1]}")
        fig.supxlabel(rf"$\langle u_j, e_1\rangle$,  $e_1$ = {labels[0]}", fontsize=8)
        handles = [Line2D([], [], marker="o", ls="", color=POS, label="positive\nneuron"),
                   Line2D([], [], marker="o", ls="", color=NEG, label="negative\nneuron"),
                   Line2D([], [], marker="*", ls="", mfc="none", mec="k", markersize=8,
                          label="extremal\ndirection")]
        fig.legend(handles=handles, loc="outside right center")
        return _finish(fig, out)


# ---- cosine heatmaps ----------------------------------------------------------

def draw_cosine_heatmap(ax, cos: np.ndarray, signs: np.ndarray, columns: Sequence[str], *,
                        order: np.ndarray | None = None, contrib: np.ndarray | None = None,
                        colorbar: bool = True, ylabel: str = "dominant neurons (sorted)"):
    """Heatmap of cosines (rows: neurons, columns: [mubar_+, mubar_-, mu_1..mu_K]).

    Rows are ordered by ``order`` (default ``heatmap_order``). Colour scale
    [0, 1] in viridis; negative cosines show in the lowest colour (the colour
    bar is extended). A white line separates positive from negative neurons and
    the class averages from the centres.
    """
    cos = np.asarray(cos, dtype=np.float64)
    signs = np.asarray(signs)
    if order is None:
        order = heatmap_order(cos, signs, np.ones(len(cos)) if contrib is None else contrib)
    C = cos[order]
    im = ax.imshow(C, aspect="auto", cmap=CMAP_COSINE, vmin=0.0, vmax=1.0,
                   interpolation="nearest")
    ax.set_xticks(range(len(columns)), [tex_column(c) for c in columns], fontsize=6.5)
    ax.tick_params(axis="x", length=0, pad=2)
    ax.axvline(1.5, color="w", lw=1.2)
    n_pos = int(np.sum(signs[order] > 0))
    if 0 < n_pos < len(order):
        ax.axhline(n_pos - 0.5, color="w", lw=1.2)
    nrow = len(order)
    ax.set_yticks([0, nrow - 1] if nrow > 1 else [0], ["1", str(nrow)] if nrow > 1 else ["1"])
    ax.set_ylabel(ylabel)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    cb = None
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, extend="min", shrink=0.9, pad=0.02, aspect=25)
        cb.set_label("cosine", fontsize=7)
        cb.ax.tick_params(labelsize=6.5)
    return im, cb


def plot_cosine_heatmap(traj: Trajectory, *, times: Sequence[float] | None = None,
                        mass: float = 0.99, out: PathLike | None = None):
    """Cosine heatmaps of the final dominant neurons at the chosen times (default: the end).

    Rows: the dominant neurons of the last snapshot (smallest set with ``mass``
    of sum_j |v_j| ||w_j||), ordered once by their final cosines, so rows are
    comparable across panels. Columns: [mubar_+, mubar_-, mu_1..mu_K].
    """
    _require_geometry(traj)
    nm = neuron_metrics(traj)
    dom = dominant_neurons(nm.contribution[-1], mass)
    order = dom[heatmap_order(nm.cosines[-1, dom], nm.sign[-1, dom], nm.contribution[-1, dom])]
    times = [float(traj.t[-1])] if times is None else list(times)
    n = len(times)
    with paper_style():
        width = "column" if n == 1 else "double"
        fig, axes = new_figure(width, 0.8 if n == 1 else 0.3, ncols=n, sharey=True)
        axes = np.atleast_1d(axes)
        for k, (ax, tt) in enumerate(zip(axes, times)):
            i = traj.index_at_time(tt)
            draw_cosine_heatmap(ax, nm.cosines[i][order], nm.sign[-1, order], nm.columns,
                                order=np.arange(order.size), colorbar=(k == n - 1),
                                ylabel=f"dominant neurons ({order.size}, sorted)" if k == 0
                                else "")
            ax.set_title(f"$t$ = {traj.t[i]:.3g}", fontsize=7)
        return _finish(fig, out)


# ---- contributions -------------------------------------------------------------

def draw_contributions(ax, contrib, signs=None, *, top: int = 40, normalise: bool = False,
                       label: str | None = None, colour: str | None = None,
                       offset: float = 0.0, width: float = 0.8) -> None:
    """Bars of the ``top`` largest contributions |v_j| ||w_j||, sorted in decreasing order.

    Bars are coloured by sign (positive blue, negative vermillion) unless
    ``colour`` is given; ``normalise`` divides by sum_j |v_j| ||w_j||.
    """
    r = np.asarray(contrib, dtype=np.float64)
    order = np.argsort(-r, kind="stable")[:top]
    vals = r[order] / (r.sum() if normalise and r.sum() > 0 else 1.0)
    x = np.arange(1, order.size + 1) + offset
    if colour is None and signs is not None:
        col = np.where(np.asarray(signs)[order] > 0, POS, NEG)
    else:
        col = colour or POS
    ax.bar(x, vals, width=width, color=col, lw=0, label=label)
    ax.set_xlim(0.3, order.size + 0.7)
    ax.set_xlabel("neuron rank")


def plot_contributions(traj: Trajectory, *, index: int = -1, top: int = 40, mass: float = 0.99,
                       out: PathLike | None = None):
    """Sorted contributions |v_j| ||w_j|| at snapshot ``index`` (the reference panel b)."""
    W, v = traj.at(index)
    from ..metrics.alignment import contributions

    r = contributions(W, v)
    s = np.sign(v) if v.ndim == 1 else np.zeros(len(r))
    n_dom = dominant_neurons(r, mass).size
    with paper_style():
        fig, ax = new_figure("column", 0.6)
        draw_contributions(ax, r, s, top=top)
        handles = [Patch(color=POS, label="positive"), Patch(color=NEG, label="negative")]
        if n_dom < min(top, r.size):
            # the cutoff is labelled in the legend, not by a free text that could sit under it
            cut = ax.axvline(n_dom + 0.5, color="0.3", ls=":", lw=0.8,
                             label=f"{mass:.0%} of total (left)")
            handles.append(cut)
        ax.set_ylabel(r"$|v_j|\,\|w_j\|$")
        ax.set_title(f"$t$ = {traj.t[index]:.3g}, {r.size} neurons", fontsize=7)
        ax.legend(handles=handles, loc="upper right")
        return _finish(fig, out)


# ---- loss and norm ---------------------------------------------------------------

def plot_loss_and_norm(traj: Trajectory, *, out: PathLike | None = None):
    """Training loss L(t) and parameter norm ||theta(t)|| against log t, phases shaded.

    The alignment phase [t_1, t_align] is shaded grey (t_align from
    ``alignment_end``); the fitting phase follows it.
    """
    idx = _positive_times(traj)
    t = traj.t[idx]
    t_end, method = alignment_end(traj)
    norm = traj.param_norm()[idx]
    n_panels = 2 if traj.loss is not None else 1
    with paper_style():
        fig, axes = new_figure("column", 0.5 * n_panels + 0.1, nrows=n_panels, sharex=True)
        axes = np.atleast_1d(axes)
        if traj.loss is not None:
            axes[0].plot(t, traj.loss[idx], color="k")
            axes[0].set_yscale("log")
            axes[0].set_ylabel("training loss $L$")
        axes[-1].plot(t, norm, color="k")
        axes[-1].set_yscale("log")
        axes[-1].set_ylabel(r"$\|\theta\|$")
        axes[-1].set_xlabel("time $t$ (gradient-flow units)")
        for ax in axes:
            ax.set_xscale("log")
            if np.isfinite(t_end):
                ax.axvspan(t[0], t_end, color=SHADE_ALIGN, lw=0, zorder=0)
        if np.isfinite(t_end):
            top = axes[0]
            top.text(np.sqrt(t[0] * t_end), 1.02, "alignment", transform=top.get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=7)
            top.text(np.sqrt(t_end * t[-1]), 1.02, "fitting", transform=top.get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=7)
            top.set_title(f"alignment end $t$ = {t_end:.3g} ({method})", fontsize=7, pad=12)
        return _finish(fig, out)
