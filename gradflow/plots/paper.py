"""The combined "paper figure", laid out like the reference Section 5.1 figure.

One double-column row of five panels, built only from a saved results dict
(schema: ``gradflow.metrics.paper``):

(a) sup-distance to the ideal classifier vs alpha, (b) sorted contributions
|v_j| ||w_j|| (share of the total), (c, d) cosine heatmaps of the dominant
neurons for the first two powers (e.g. p=1, p=3), (e) robust accuracy vs l2
radius with the theory lines 1/sqrt(K) and sqrt(2)/2.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..metrics.alignment import column_names, dominant_neurons
from ..metrics.paper import check_paper_results
from .dynamics import draw_cosine_heatmap
from .robustness import draw_robust_accuracy, draw_sup_distance
from .style import DOUBLE, new_figure, p_colour, p_label, panel_label, paper_style, save_figure


def paper_figure(results: Mapping, *, out: str | os.PathLike | None = None, top: int = 20,
                 mass: float = 0.99, width: float = DOUBLE):
    """Draw panels (a)-(e) from ``results`` (keys in ``gradflow.metrics.paper``).

    ``top``: number of bars per p in panel (b); ``mass``: the dominant set of
    panels (c, d) carries this share of sum_j |v_j| ||w_j||. Panels (c, d) show
    the first two entries of ``ps``.
    """
    r = check_paper_results(results)
    ps, K = r["ps"], int(r["K"])
    cols = column_names(K)
    with paper_style():
        fig, axes = new_figure(width, 0.3, ncols=5,
                               gridspec_kw={"width_ratios": [1.05, 1.0, 0.85, 0.85, 1.05]})
        ax_a, ax_b, ax_c, ax_d, ax_e = axes
        # (a)
        draw_sup_distance(ax_a, r["alphas"], {p: r["sup_distance"][i] for i, p in enumerate(ps)})
        ax_a.set_ylabel(r"$\sup_{\|x\|=1}|cf - F|$")
        # (b): grouped bars of each p's sorted contribution shares
        n = len(ps)
        w = 0.8 / n
        for i, p in enumerate(ps):
            c = r["contributions"][i]
            share = np.sort(c)[::-1][:top] / max(c.sum(), 1e-300)
            ax_b.bar(np.arange(1, share.size + 1) + (i - (n - 1) / 2) * w, share, width=w,
                     color=p_colour(p), lw=0)
        ax_b.set_xlabel("neuron rank")
        ax_b.set_ylabel(r"share of $\Sigma_j\,|v_j|\,\|w_j\|$")
        # (c, d)
        # On its own line: the two narrow heatmap titles collide when written on one line.
        title_alpha = (rf"$\alpha$={float(r['heatmap_alpha']):g}" if "heatmap_alpha" in r
                       else "")
        im = None
        for i, ax in enumerate((ax_c, ax_d)):
            if i >= n:
                ax.set_axis_off()
                continue
            dom = dominant_neurons(r["contributions"][i], mass)
            im, _ = draw_cosine_heatmap(ax, r["cosines"][i][dom], r["signs"][i][dom], cols,
                                        contrib=r["contributions"][i][dom], colorbar=False,
                                        ylabel=f"dominant neurons ({dom.size})")
            # Columns are too narrow for one label each: label the two blocks instead.
            ax.set_xticks([0.5, 2 + (K - 1) / 2],
                          [r"$\bar\mu_+\bar\mu_-$", rf"$\mu_1 \ldots \mu_{{{K}}}$"],
                          fontsize=6)
        if im is not None:
            cb = fig.colorbar(im, ax=[ax_c, ax_d], extend="min", shrink=0.9, pad=0.01, aspect=25)
            cb.set_label("cosine", fontsize=7)
            cb.ax.tick_params(labelsize=6)
        # (e)
        draw_robust_accuracy(ax_e, r["radii"], {p: r["robust_accuracy"][i]
                                                for i, p in enumerate(ps)}, K)
        heat = [("\n".join(filter(None, [p_label(p), title_alpha]))) for p in ps[:2]]
        titles = ["", "", heat[0] if n > 0 else "", heat[1] if n > 1 else "", ""]
        for ax, letter, extra in zip(axes, "abcde", titles):
            panel_label(ax, letter, extra)
        # One shared legend below the row: the p colours and the theory lines of (e).
        handles, labels = ax_e.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
        if out is not None:
            save_figure(fig, out)
        return fig
