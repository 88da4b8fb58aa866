"""Evaluation of predicted cells against real perturbed cells."""

from perturbjax.metrics.calibration import (
    Ceiling,
    calibrate,
    replicate_ceiling,
)
from perturbjax.metrics.distances import DISTANCES, compare_distances, sinkhorn_epsilon
from perturbjax.metrics.evaluate import HeldOutReference, evaluate_prediction, evaluation_ceiling
from perturbjax.metrics.expression import common_degs, r2_of_means, r2_scores
from perturbjax.metrics.ranking import higher_is_better, penalty_ranking
from perturbjax.metrics.response import (
    RESPONSE_METRICS,
    ResponseTruth,
    discrimination,
    response_scores,
)

__all__ = [
    "DISTANCES",
    "RESPONSE_METRICS",
    "Ceiling",
    "HeldOutReference",
    "ResponseTruth",
    "calibrate",
    "common_degs",
    "compare_distances",
    "discrimination",
    "evaluate_prediction",
    "evaluation_ceiling",
    "higher_is_better",
    "penalty_ranking",
    "r2_of_means",
    "r2_scores",
    "replicate_ceiling",
    "response_scores",
    "sinkhorn_epsilon",
]
