"""Robustness figures drawn from saved arrays (THEORY.md section 6).

Theory lines: the ReLU solution F has radius 1/sqrt(K) at a subclass centre,
F_p (p >= 2) has sqrt(2)/2, and no classifier can beat sqrt(2)/2.

Inputs keyed by p are mappings ``{p: array}``; an array with a leading
repeats axis is summarised by its mean and a min-max band over repeats.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .._validate import check_array
from .style import THEORY_OPT, THEORY_RELU, new_figure, p_colour, p_label, paper_style, save_figure

PathLike = str | os.PathLike


def _finish(fig, out):
    if out is not None:
        save_figure(fig, out)
    return fig


def _as_repeats(name: str, a, n: int) -> np.ndarray:
    """(R, n) view of a (n,) or (R, n) array."""
    a = check_array(name, a, finite=False).astype(np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n:
        raise ValueError(f"`{name}` must have shape ({n},) or (repeats, {n}), got {a.shape}")
    return a


def theory_lines(ax, K: int | None, *, orientation: str = "vertical", labels: bool = True) -> None:
    """Theory radii: 1/sqrt(K) (ReLU solution F) and sqrt(2)/2 (F_p, p >= 2; the optimum)."""
    line = ax.axvline if orientation == "vertical" else ax.axhline
    if K is not None:
        line(1 / np.sqrt(K), color=THEORY_RELU, ls="--", lw=0.8,
             label=rf"$1/\sqrt{{K}}$ = {1 / np.sqrt(K):.3f}" if labels else None)
    line(np.sqrt(2) / 2, color=THEORY_OPT, ls="-.", lw=0.8,
         label=r"$\sqrt{2}/2$" if labels else None)


def draw_band(ax, x, Y: np.ndarray, *, colour, label, marker="o") -> None:
    """Mean over the repeats axis with a min-max band (no band for a single repeat)."""
    mean = np.nanmean(Y, axis=0)
    ax.plot(x, mean, color=colour, marker=marker, ms=2.5, label=label)
    if Y.shape[0] > 1:
        ax.fill_between(x, np.nanmin(Y, axis=0), np.nanmax(Y, axis=0), color=colour, alpha=0.25,
                        lw=0)


def draw_robust_accuracy(ax, radii, accuracy: Mapping[float, np.ndarray], K: int | None) -> None:
    """Robust accuracy vs l2 radius for each p (mean, min-max band over repeats) + theory lines."""
    radii = check_array("radii", radii, ndim=1).astype(np.float64)
    for p, acc in accuracy.items():
        draw_band(ax, radii, _as_repeats(f"accuracy[{p}]", acc, radii.size),
                  colour=p_colour(p), label=p_label(p))
    theory_lines(ax, K)
    ax.set_xlabel(r"$\ell_2$ attack radius $\epsilon$")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(radii.min(), radii.max())


def plot_robust_accuracy(radii, accuracy: Mapping[float, np.ndarray], *, K: int | None = None,
                         out: PathLike | None = None):
    """Robust accuracy against l2 radius (reference panel e).

    ``accuracy[p]`` has shape (radii,) or (repeats, radii); the band spans the
    min and max over repeats. Vertical lines at 1/sqrt(K) and sqrt(2)/2.
    """
    with paper_style():
        fig, ax = new_figure("column", 0.65)
        draw_robust_accuracy(ax, radii, accuracy, K)
        ax.legend(loc="upper right")
        return _finish(fig, out)


def plot_radius_histogram(lower, upper, *, K: int | None = None, bins: int = 30,
                          title: str | None = None, out: PathLike | None = None):
    """Histogram of per-sample l2 radii with their brackets [lower_i, upper_i].

    ``lower``/``upper`` (n,): for each test point the true radius r_i lies in
    [lower_i, upper_i] (e.g. lower: largest radius at which the attack failed,
    upper: smallest at which it succeeded; nan/inf upper = never broken). The
    filled bars show the bracket midpoints, the step outlines the lower and the
    upper ends, so the bracket width is visible as their horizontal spread.
    """
    lo = check_array("lower", lower, ndim=1, finite=False).astype(np.float64)
    hi = check_array("upper", upper, ndim=1, finite=False).astype(np.float64)
    if lo.shape != hi.shape:
        raise ValueError(f"`lower` and `upper` must have the same shape, got {lo.shape} and "
                         f"{hi.shape}")
    ok = np.isfinite(lo) & np.isfinite(hi)
    if np.any(lo[ok] > hi[ok]):
        raise ValueError("`lower` must be <= `upper` for every sample")
    n_unbroken = int(np.sum(~np.isfinite(hi)))
    mid = 0.5 * (lo[ok] + hi[ok])
    finite_vals = np.concatenate([lo[np.isfinite(lo)], hi[ok]])
    top = max(float(finite_vals.max()) if finite_vals.size else 1.0, np.sqrt(2) / 2) * 1.05
    edges = np.linspace(0, top, bins + 1)
    with paper_style():
        fig, ax = new_figure("column", 0.62)
        ax.hist(mid, bins=edges, color="0.7", label="bracket midpoint")
        ax.hist(lo[np.isfinite(lo)], bins=edges, histtype="step", color="k", lw=0.8, ls="-",
                label="lower end")
        ax.hist(hi[ok], bins=edges, histtype="step", color="k", lw=0.8, ls=(0, (2, 1)),
                label="upper end")
        theory_lines(ax, K)
        ax.set_xlabel(r"per-sample $\ell_2$ radius")
        ax.set_ylabel("test points")
        note = f"{ok.sum()} points" + (f"; {n_unbroken} never broken" if n_unbroken else "")
        ax.set_title(title + f" ({note})" if title else note, fontsize=7)
        ax.legend(loc="upper left", fontsize=6.5)
        return _finish(fig, out)


def plot_radius_vs_K(Ks: Sequence[int], medians: Mapping[float, np.ndarray],
                     intervals: Mapping[float, np.ndarray] | None = None, *,
                     out: PathLike | None = None):
    """Median l2 radius against K (log-log) for each p, with theory 1/sqrt(K) and sqrt(2)/2.

    ``medians[p]`` has shape (len(Ks),); ``intervals[p]`` (optional) has shape
    (len(Ks), 2) with the lower and upper ends of an interval drawn as error bars.
    Rows with a NaN or inf median (cells not run) are left out; a non-finite
    interval end draws no bar on that side.
    """
    Ks = check_array("Ks", Ks, ndim=1).astype(np.float64)
    if np.any(Ks <= 0):
        raise ValueError("`Ks` must be positive")
    with paper_style():
        fig, ax = new_figure("column", 0.7)
        for p, med in medians.items():
            med = check_array(f"medians[{p}]", med, ndim=1, finite=False).astype(np.float64)
            if med.size != Ks.size:
                raise ValueError(f"`medians[{p}]` must have length {Ks.size}, got {med.size}")
            yerr = None
            if intervals is not None and p in intervals:
                iv = check_array(f"intervals[{p}]", intervals[p], ndim=2,
                                 finite=False).astype(np.float64)
                if iv.shape != (Ks.size, 2):
                    raise ValueError(f"`intervals[{p}]` must have shape ({Ks.size}, 2), "
                                     f"got {iv.shape}")
                yerr = np.abs(np.stack([med - iv[:, 0], iv[:, 1] - med]))
                # matplotlib rejects NaN error bars; a missing end is drawn as no bar
                yerr[~np.isfinite(yerr)] = 0.0
            ok = np.isfinite(med)
            ax.errorbar(Ks[ok], med[ok], yerr=None if yerr is None else yerr[:, ok],
                        color=p_colour(p), marker="o", ms=3, capsize=2, lw=1.0,
                        label=p_label(p))
        kk = np.geomspace(Ks.min() * 0.9, Ks.max() * 1.1, 50)
        ax.plot(kk, 1 / np.sqrt(kk), color=THEORY_RELU, ls="--", lw=0.8,
                label=r"$1/\sqrt{K}$ (theory, $F$)")
        ax.axhline(np.sqrt(2) / 2, color=THEORY_OPT, ls="-.", lw=0.8,
                   label=r"$\sqrt{2}/2$ (theory, $F_p$)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(Ks, [f"{k:g}" for k in Ks])
        ax.minorticks_off()
        ax.set_xlabel("number of subclasses $K$")
        ax.set_ylabel(r"median $\ell_2$ radius")
        ax.legend(loc="lower left", fontsize=6.5)
        return _finish(fig, out)


def draw_sup_distance(ax, alphas, distances: Mapping[float, np.ndarray]) -> None:
    """sup-distance to the ideal classifier vs alpha per p (mean, min-max band), log y."""
    alphas = check_array("alphas", alphas, ndim=1).astype(np.float64)
    for p, d in distances.items():
        draw_band(ax, alphas, _as_repeats(f"distances[{p}]", d, alphas.size), colour=p_colour(p),
                  label=p_label(p))
    ax.set_yscale("log")
    ax.set_xlabel(r"noise level $\alpha$")
    ax.set_ylabel(r"$\sup_{\|x\|=1} |c f(x) - F(x)|$")


def plot_sup_distance(alphas, distances: Mapping[float, np.ndarray], *,
                      out: PathLike | None = None):
    """Sup-distance of the trained net to its ideal classifier against alpha (reference panel a).

    ``distances[p]`` has shape (alphas,) or (repeats, alphas): for p=1 the
    distance to F(x) = relu(<x,mu_+>) - relu(<x,mu_->), for p > 2 to F_p.
    """
    with paper_style():
        fig, ax = new_figure("column", 0.65)
        draw_sup_distance(ax, alphas, distances)
        ax.legend(loc="best")
        return _finish(fig, out)
