"""Figures built from saved results only (matplotlib, Agg backend; PNG + PDF).

Importing this package is the only place gradflow imports matplotlib.
"""
from __future__ import annotations

from .animation import MAX_GIF_BYTES, animate_neuron_directions
from .dynamics import (
    draw_cosine_heatmap,
    plot_contributions,
    plot_cosine_heatmap,
    plot_loss_and_norm,
    plot_neuron_directions,
    plot_neuron_trajectories,
    tex_column,
)
from .paper import paper_figure
from .robustness import (
    plot_radius_histogram,
    plot_radius_vs_K,
    plot_robust_accuracy,
    plot_sup_distance,
)
from .style import (
    COLUMN,
    DOUBLE,
    OKABE_ITO,
    THEORY_OPT,
    THEORY_RELU,
    activation_label,
    new_figure,
    p_colour,
    p_label,
    panel_label,
    paper_style,
    save_figure,
)

# the building blocks (style helpers, heatmap panel) are public so that studies can compose
# their own figures in the house style without reaching into submodules
__all__ = [
    "COLUMN", "DOUBLE", "MAX_GIF_BYTES", "OKABE_ITO", "THEORY_OPT", "THEORY_RELU",
    "activation_label", "animate_neuron_directions", "draw_cosine_heatmap", "new_figure",
    "p_colour", "p_label", "panel_label", "paper_figure", "paper_style", "plot_contributions",
    "plot_cosine_heatmap", "plot_loss_and_norm", "plot_neuron_directions",
    "plot_neuron_trajectories", "plot_radius_histogram", "plot_radius_vs_K",
    "plot_robust_accuracy", "plot_sup_distance", "save_figure", "tex_column",
]
