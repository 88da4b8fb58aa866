"""Scores of the predicted response (prediction minus control), the metrics the field trusts.

For one held-out context: C its control cells, R its real perturbed cells, P the predicted
cells; d_R = mean(R) - mean(C) and d_P = mean(P) - mean(C), per gene, in float64. The DEG
lists come from R vs C only (scanpy's Wilcoxon, genes expressed in at least 10% of the cells
of either group, ranked by |score|); P is tested against C on its own, never beside R. The
definitions are those of cell-eval where it has the metric (`pearson_delta`, `mae`,
`discrimination_score`, overlap at N), and `tests/metrics/test_peer_parity.py` checks them there.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from perturbjax.metrics.expression import wilcoxon

RESPONSE_METRICS = ("pearson_delta", "pearson_delta_top20", "pearson_delta_top100",
                    "r2_delta_top100", "mse_top100", "mae_top100", "direction_top100",
                    "degs_robust")
LOWER_IS_BETTER = frozenset({"mse_top100", "mae_top100"})
N_DEGS = 100
MIN_EXPRESSED_FRACTION = 0.1


def mean_response(cells: np.ndarray, control_mean: np.ndarray) -> np.ndarray:
    """mean(cells) - mean(control), per gene, in float64."""
    return np.asarray(cells, np.float64).mean(axis=0) - control_mean


def robust_degs(control: np.ndarray, group: np.ndarray, genes: np.ndarray,
                n: int = N_DEGS, frame: pd.DataFrame | None = None) -> np.ndarray:
    """Indices of the `n` genes of `group` vs `control` with the largest |Wilcoxon score|
    among the genes expressed (> 0) in at least 10% of the cells of either group; equal
    scores (common: a shifted copy of the control cells separates every shifted gene
    perfectly) keep the genes' order. `frame`: the test's result (`expression.wilcoxon`)
    when it is already at hand."""
    frame = wilcoxon(control, group, genes) if frame is None else frame
    expressed = np.maximum((control > 0).mean(0), (group > 0).mean(0)) >= MIN_EXPRESSED_FRACTION
    score = np.zeros(len(genes))
    score[pd.Index(genes).get_indexer(frame["names"].to_numpy())] = np.abs(
        frame["scores"].to_numpy(np.float64))
    candidates = np.flatnonzero(expressed)
    return candidates[np.argsort(-score[candidates], kind="stable")[:n]]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 (not NaN) when either vector is constant, as for the `control`
    reference, whose predicted response is zero everywhere."""
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def r2_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of `truth` by `pred` (scikit-learn's `r2_score`)."""
    total = ((truth - truth.mean()) ** 2).sum()
    return float(1.0 - ((truth - pred) ** 2).sum() / total) if total > 0 else float("nan")


@dataclasses.dataclass(frozen=True)
class ResponseTruth:
    """The real side of one held-out context, built once and shared by every prediction:
    the control cells and their mean, the real response, and the real DEG list (best first)."""

    control: np.ndarray
    control_mean: np.ndarray
    response: np.ndarray
    degs: np.ndarray
    genes: np.ndarray

    @classmethod
    def build(cls, control: np.ndarray, real: np.ndarray, genes,
              frame: pd.DataFrame | None = None) -> ResponseTruth:
        """`frame`: the Wilcoxon test of real vs control, when it is already at hand."""
        genes = np.asarray(genes).astype(str)
        control_mean = np.asarray(control, np.float64).mean(axis=0)
        return cls(control, control_mean, mean_response(real, control_mean),
                   robust_degs(control, real, genes, frame=frame), genes)

    def top(self, n: int) -> np.ndarray:
        return self.degs[:n]


def response_scores(truth: ResponseTruth, pred: np.ndarray) -> dict[str, float]:
    """Every metric of RESPONSE_METRICS for one prediction (cells x genes)."""
    d_p, d_r = mean_response(pred, truth.control_mean), truth.response
    top = truth.top(N_DEGS)
    predicted_degs = robust_degs(truth.control, pred, truth.genes)
    error = d_p[top] - d_r[top]
    return {
        "pearson_delta": pearson(d_p, d_r),
        "pearson_delta_top20": pearson(d_p[truth.top(20)], d_r[truth.top(20)]),
        "pearson_delta_top100": pearson(d_p[top], d_r[top]),
        "r2_delta_top100": r2_score(d_r[top], d_p[top]),
        "mse_top100": float(np.mean(error**2)),
        "mae_top100": float(np.mean(np.abs(error))),
        "direction_top100": float(np.mean(np.sign(d_p[top]) == np.sign(d_r[top]))),
        "degs_robust": len(np.intersect1d(top, predicted_degs)) / max(len(top), 1),
    }


def discrimination(predicted: np.ndarray, real: np.ndarray) -> np.ndarray:
    """cell-eval's `discrimination_score` (L1) with contexts in the role of perturbations.

    `predicted` and `real` are (K contexts x genes) responses, row k of each for context k.
    Context k scores 1 - rank / K, where rank is the place of its own real response among
    all K by L1 distance to its prediction (0 = nearest): 1 when every prediction is
    nearest its own context, about 0.5 for a prediction blind to the context.
    """
    if predicted.shape != real.shape:
        raise ValueError(f"discrimination needs one predicted and one real response per "
                         f"context; got {predicted.shape} and {real.shape}")
    k = len(real)
    distances = np.abs(predicted[:, None, :] - real[None, :, :]).sum(-1)   # (K pred, K real)
    order = np.argsort(distances, axis=1, kind="stable")
    rank = np.argmax(order == np.arange(k)[:, None], axis=1)
    return 1.0 - rank / k
