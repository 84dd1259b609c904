"""Figures built from saved results only (matplotlib, Agg backend; PNG + PDF).

Importing this package is the only place gradflow imports matplotlib.
"""
from __future__ import annotations

from .animation import MAX_GIF_BYTES, animate_neuron_directions
from .dynamics import (
    plot_contributions,
    plot_cosine_heatmap,
    plot_loss_and_norm,
    plot_neuron_directions,
    plot_neuron_trajectories,
)
from .paper import paper_figure
from .robustness import (
    plot_radius_histogram,
    plot_radius_vs_K,
    plot_robust_accuracy,
    plot_sup_distance,
)
from .style import COLUMN, DOUBLE, paper_style, save_figure

__all__ = [
    "COLUMN", "DOUBLE", "MAX_GIF_BYTES", "animate_neuron_directions", "paper_figure",
    "paper_style", "plot_contributions", "plot_cosine_heatmap", "plot_loss_and_norm",
    "plot_neuron_directions", "plot_neuron_trajectories", "plot_radius_histogram",
    "plot_radius_vs_K", "plot_robust_accuracy", "plot_sup_distance", "save_figure",
]
