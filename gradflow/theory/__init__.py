"""Theory module: ideal classifiers, closed-form radii, sup-distance, alignment predictions."""
from __future__ import annotations

from .potential import (
    dataset_potential,
    dataset_potential_grad,
    population_potential,
    population_potential_grad,
    riemannian_grad,
)

__all__ = [
    "dataset_potential",
    "dataset_potential_grad",
    "population_potential",
    "population_potential_grad",
    "riemannian_grad",
]
