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
from .trajectory import Trajectory

__all__ = [
    "AlignmentSummary", "NeuronMetrics", "Trajectory", "alignment_end", "column_names",
    "contributions", "direction_cosines", "dominant_neurons", "extremal_directions",
    "fitting_phase", "heatmap_order", "nearest_extremal", "neuron_metrics", "neuron_signs",
    "summarize_alignment", "unit_directions",
]
