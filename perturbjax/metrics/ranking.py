"""The penalty ranking of models across many metrics (spec: Evaluation / Ranking)."""

from __future__ import annotations

import pandas as pd

HIGHER_IS_BETTER_PREFIXES = ("degs", "r2_", "pearson_", "direction_", "discrimination")


def higher_is_better(metric: str) -> bool:
    """DEG overlaps, R^2, correlations, direction agreement, discrimination and every
    calibrated score are better when larger; errors and distances when smaller."""
    return metric.endswith("_calibrated") or metric.startswith(HIGHER_IS_BETTER_PREFIXES)


def penalty_ranking(results: pd.DataFrame, metrics: list[str],
                    model_key: str = "model") -> pd.DataFrame:
    """Average each metric per model, scale it to (x - best) / (worst - best), sum: the penalty.

    `results` has one row per (model, context, dose, seed). Lower penalty is better; a metric
    on which all models tie adds 0. Returns a frame indexed by model, sorted by penalty.
    """
    means = results.groupby(model_key)[metrics].mean()
    scaled = pd.DataFrame(index=means.index)
    for metric in metrics:
        column = means[metric]
        best = column.max() if higher_is_better(metric) else column.min()
        worst = column.min() if higher_is_better(metric) else column.max()
        span = worst - best
        scaled[metric] = 0.0 if span == 0 else (column - best) / span
    table = means.copy()
    table["penalty"] = scaled.sum(axis=1)
    table["rank"] = table["penalty"].rank(method="min").astype(int)
    return table.sort_values("penalty")
