"""Theory module: ideal classifiers, closed-form radii, exact radii, sup-distance, predictions.

Entry points (see docs/theory.md for every formula and its source):

- ideal classifiers: ``ideal_F``, ``ideal_Fp``, ``bayes_classifier``, ``from_data``
  (callable on numpy arrays and torch tensors);
- closed-form radii at a centre: ``radius_F``, ``radius_Fp``, ``radius_ceiling``, with the
  sympy derivations ``derive_radius_F``, ``derive_radius_Fp`` and the numerical check
  ``numeric_radius_at_centre``;
- exact per-sample radius at any point: ``exact_radius(x, classifier) -> RadiusResult``;
- sup-distance to an ideal classifier: ``sup_distance(model, classifier, X)``;
- alignment phase: ``population_potential``, ``dataset_potential`` (+ ``_grad``),
  ``riemannian_grad``, ``potential_max``, ``alignment_rate``, ``alignment_duration``, ``duration_ratio``,
  ``separability_mu``, ``alignment_time_bound``.
"""
from __future__ import annotations

from .classifiers import IdealClassifier, bayes_classifier, from_data, ideal_F, ideal_Fp
from .exact_radius import RadiusResult, exact_radius
from .potential import (
    dataset_potential,
    dataset_potential_grad,
    population_potential,
    population_potential_grad,
    riemannian_grad,
)
from .predictions import (
    alignment_duration,
    alignment_rate,
    alignment_time_bound,
    duration_ratio,
    potential_max,
    potential_maximiser,
    potential_min,
    separability_mu,
)
from .radii import (
    RADIUS_CEILING,
    derive_radius_F,
    derive_radius_Fp,
    derive_radius_Fp_given_m,
    numeric_radius_at_centre,
    radius_ceiling,
    radius_closed_form,
    radius_F,
    radius_Fp,
)
from .supdist import SupDistResult, optimal_scale, reference_scale, sup_distance

__all__ = [
    "IdealClassifier", "bayes_classifier", "from_data", "ideal_F", "ideal_Fp",
    "RadiusResult", "exact_radius",
    "dataset_potential", "dataset_potential_grad", "population_potential",
    "population_potential_grad", "riemannian_grad",
    "alignment_duration", "alignment_rate", "alignment_time_bound", "duration_ratio", "potential_max",
    "potential_maximiser", "potential_min", "separability_mu",
    "RADIUS_CEILING", "derive_radius_F", "derive_radius_Fp", "derive_radius_Fp_given_m",
    "numeric_radius_at_centre", "radius_ceiling", "radius_closed_form", "radius_F", "radius_Fp",
    "SupDistResult", "optimal_scale", "reference_scale", "sup_distance",
]
