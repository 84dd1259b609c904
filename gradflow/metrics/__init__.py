"""Alignment metrics over saved trajectories (numpy only: never imports plotting)."""
from __future__ import annotations

from .alignment import (
    AlignmentSummary,
    NeuronMetrics,
    alignment_end,
    column_names,
    contributions,
    direction_cosines,
    dominant_neurons,
    extremal_directions,
    fitting_phase,
    heatmap_order,
    nearest_extremal,
    neuron_metrics,
    neuron_signs,
    summarize_alignment,
    unit_directions,
)
from .paper import (
    PAPER_KEYS,
    check_paper_results,
    load_paper_results,
    paper_arrays_from_trajectories,
    save_paper_results,
)
from .trajectory import Trajectory

__all__ = [
    "AlignmentSummary", "NeuronMetrics", "Trajectory", "alignment_end", "column_names",
    "contributions", "direction_cosines", "dominant_neurons", "extremal_directions",
    "fitting_phase", "heatmap_order", "nearest_extremal", "neuron_metrics", "neuron_signs",
    "summarize_alignment", "unit_directions",
    "PAPER_KEYS", "check_paper_results", "load_paper_results", "paper_arrays_from_trajectories",
    "save_paper_results",
]
