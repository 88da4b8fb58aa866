"""Evaluation of predicted cells against real perturbed cells."""

from perturbjax.metrics.distances import DISTANCES, compare_distances, sinkhorn_epsilon
from perturbjax.metrics.evaluate import HeldOutReference, evaluate_prediction
from perturbjax.metrics.expression import common_degs, r2_of_means, r2_scores
from perturbjax.metrics.ranking import higher_is_better, penalty_ranking

__all__ = [
    "DISTANCES",
    "HeldOutReference",
    "common_degs",
    "compare_distances",
    "evaluate_prediction",
    "higher_is_better",
    "penalty_ranking",
    "r2_of_means",
    "r2_scores",
    "sinkhorn_epsilon",
]
