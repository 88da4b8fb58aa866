"""Where a score lies between a trivial reference (0) and a replicate of the real cells (1).

The ceiling of a metric on one held-out context is the score of half of its real perturbed
cells as a prediction of the other half (control cells shared), averaged over seeded random
splits: the best a model can do at this cell count. The floor is the better of the trivial
references (`floors`: the study says which rows are floor references, and of which one)
on the same context. calibrated = (score - floor) /
(ceiling - floor): 0 is no better than a trivial reference, 1 is as good as a replicate,
negative is worse than a trivial reference. It is NaN where the ceiling is no better than
the floor, since the scale then means nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from perturbjax.metrics.ranking import higher_is_better
from perturbjax.metrics.response import discrimination, mean_response

CEILING = "_ceiling"
CALIBRATED = "_calibrated"
GROUP = ["context", "condition"]


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """A context's replicate ceiling: the mean score over the splits, and each split's
    responses (scored half, truth half; repeats x genes) for the run-level discrimination."""

    scores: dict[str, float]
    predicted: np.ndarray
    real: np.ndarray


def half_splits(n_cells: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`repeats` seeded random splits of `n_cells` cells into two halves (the odd cell
    goes to the truth half)."""
    if n_cells < 4:
        raise ValueError(f"a replicate ceiling needs at least 4 real perturbed cells to split "
                         f"in two halves; the context has {n_cells}")
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(repeats):
        order = rng.permutation(n_cells)
        splits.append((np.sort(order[: n_cells // 2]), np.sort(order[n_cells // 2:])))
    return splits


def replicate_ceiling(score: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]],
                      control: np.ndarray, real: np.ndarray, repeats: int = 10,
                      seed: int = 0) -> Ceiling:
    """The mean over `repeats` half splits of `score(control, truth_half, scored_half)`."""
    control_mean = np.asarray(control, np.float64).mean(axis=0)
    runs, predicted, truth = [], [], []
    for scored, target in half_splits(len(real), repeats, seed):
        runs.append(score(control, real[target], real[scored]))
        predicted.append(mean_response(real[scored], control_mean))
        truth.append(mean_response(real[target], control_mean))
    means = pd.DataFrame(runs).mean(axis=0)
    return Ceiling({k: float(v) for k, v in means.items()}, np.stack(predicted),
                   np.stack(truth))


def _floor_scores(metrics: pd.DataFrame, name: str, floors: Mapping[str, str]
                  ) -> pd.DataFrame:
    """Score `name` of each floor reference (columns) per (context, condition) (rows).
    `floors` maps a row's model name to the floor reference it is (a study may name one
    reference's rows in several ways)."""
    reference = metrics["model"].astype(str).map(floors)
    rows = metrics[reference.notna()].assign(reference=reference)
    missing = set(floors.values()) - set(rows["reference"])
    if missing:
        raise ValueError(f"calibration needs the rows of the floor references {sorted(missing)}")
    keys = rows[GROUP].astype(str)
    return rows.assign(**{g: keys[g] for g in GROUP}).pivot_table(
        index=GROUP, columns="reference", values=name, dropna=False)


def calibrate(metrics: pd.DataFrame, names: list[str], floors: Mapping[str, str]
              ) -> pd.DataFrame:
    """`metrics` with `<name>_calibrated` for each name, from its `<name>_ceiling` column
    and the floor, the best floor reference in its (context, condition)."""
    out = metrics.copy()
    key = pd.MultiIndex.from_frame(out[GROUP].astype(str))
    for name in names:
        scores = _floor_scores(out, name, floors)
        best = scores.max(axis=1) if higher_is_better(name) else scores.min(axis=1)
        floor = best.reindex(key).to_numpy()
        span = out[name + CEILING].to_numpy(np.float64) - floor
        better = span > 0 if higher_is_better(name) else span < 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name + CALIBRATED] = np.where(better, (out[name].to_numpy() - floor) / span,
                                              np.nan)
    return out


def floor_models(metrics: pd.DataFrame, name: str, floors: Mapping[str, str]) -> pd.Series:
    """Which floor reference is the floor of `name`, per (context, condition)."""
    scores = _floor_scores(metrics, name, floors)
    defined = scores.dropna(how="all")  # a metric may be undefined on a context (NaN)
    best = defined.idxmax(axis=1) if higher_is_better(name) else defined.idxmin(axis=1)
    return best.astype(object).reindex(scores.index)


def add_discrimination(metrics: pd.DataFrame, predicted: dict[int, np.ndarray],
                       real: dict[tuple[str, str], np.ndarray],
                       ceilings: dict[tuple[str, str], Ceiling]) -> pd.DataFrame:
    """`metrics` with `discrimination` and its ceiling, across the contexts of each condition.

    `predicted[row]` is the predicted response of a row of `metrics` (by index), `real` and
    `ceilings` are keyed by (context, condition). Each (model, seed) is ranked across the
    contexts it predicted; with fewer than two contexts the score is NaN. The ceiling of a
    context is the mean over splits of the discrimination of the scored halves against the
    truth halves of every context of the condition.
    """
    out = metrics.copy()
    out["discrimination"] = np.nan
    out["discrimination" + CEILING] = np.nan
    seeds = out["seed"].astype(object).where(out["seed"].notna(), "none").astype(str)
    for condition, rows in out.groupby("condition"):
        contexts = sorted(rows["context"].astype(str).unique())
        if len(contexts) < 2:
            continue
        halves = [ceilings[(c, condition)] for c in contexts]
        ceiling = np.mean([discrimination(np.stack([h.predicted[r] for h in halves]),
                                          np.stack([h.real[r] for h in halves]))
                           for r in range(min(len(h.real) for h in halves))], axis=0)
        out.loc[rows.index, "discrimination" + CEILING] = (
            rows["context"].astype(str).map(dict(zip(contexts, ceiling, strict=True))))
        for _, group in rows.groupby([rows["model"], seeds[rows.index]]):
            covered = group["context"].astype(str).tolist()
            if len(covered) < 2 or len(set(covered)) != len(covered):
                continue
            truth = np.stack([real[(c, condition)] for c in covered])
            scores = discrimination(np.stack([predicted[i] for i in group.index]), truth)
            out.loc[group.index, "discrimination"] = scores
    return out
