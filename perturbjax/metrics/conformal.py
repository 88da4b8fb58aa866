"""Split-conformal intervals of a context's per-gene mean response, contexts as the units.

Calibration: for each of K calibration contexts, the absolute residual |d_R - d_P| of its
mean response per gene (d = mean(perturbed) - mean(control)), predicted by a model that did not
see that context's perturbed cells. For a new context, gene g's interval is d_P,g ± q_g, where
q_g is the ceil(level (K+1))-th smallest of gene g's K residuals. If the contexts are
exchangeable, the new context's real d_R,g lies inside with probability at least `level` (and
under level + 1/(K+1) for continuous residuals), so the expected share of genes covered lies
in the same range. No finite interval has that guarantee with fewer than `fewest_contexts(level)`
calibration contexts (4 at 80%, 9 at 90%): the half-width is then infinite, and says so.

The guarantee needs nothing of the model, but it is per gene and on average over contexts; a
context unlike the others (not exchangeable) can be covered far less.

Beside it, the ensemble's spread: d_P ± z * (sd of the seeds' d_P), z the normal quantile of
the level. It is NOT calibrated (seeds share the data and its bias); it is reported to show
how far from the level it falls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

LEVELS = (0.8, 0.9)


def calibration_rank(n_calibration: int, level: float) -> int:
    """ceil(level (n + 1)): which smallest calibration residual is the interval's half-width
    (larger than `n_calibration` when none is)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"an interval level lies strictly between 0 and 1, got {level}")
    return math.ceil(level * (n_calibration + 1) - 1e-9)


def fewest_contexts(level: float) -> int:
    """The fewest calibration contexts that give a finite interval at `level`."""
    n = 1
    while calibration_rank(n, level) > n:
        n += 1
    return n


def half_widths(residuals: np.ndarray, level: float) -> np.ndarray:
    """Per gene (columns), the conformal half-width from the absolute residuals of the
    calibration contexts (rows; NaN where a context lacks the gene); inf where too few."""
    residuals = np.abs(np.asarray(residuals, np.float64))
    available = np.sum(~np.isnan(residuals), axis=0)
    ordered = np.sort(np.where(np.isnan(residuals), np.inf, residuals), axis=0)
    ranks = np.array([calibration_rank(int(n), level) for n in available])
    finite = ranks <= available
    widths = np.full(residuals.shape[1], np.inf)
    columns = np.flatnonzero(finite)
    widths[columns] = ordered[ranks[finite] - 1, columns]
    return widths


def seed_spread_half_widths(members: np.ndarray, level: float) -> np.ndarray:
    """z * sd across seeds (rows) of the predicted response, per gene: NOT calibrated."""
    return stats.norm.ppf(0.5 + level / 2) * np.asarray(members, np.float64).std(axis=0)


def interval_scores(real: np.ndarray, predicted: np.ndarray, half_width: np.ndarray
                    ) -> dict[str, float]:
    """The share of genes whose real response lies in predicted ± half_width, and the
    intervals' mean width (inf if any is infinite)."""
    inside = np.abs(np.asarray(real) - np.asarray(predicted)) <= half_width
    return {"coverage": float(np.mean(inside)), "mean_width": float(np.mean(2 * half_width))}


def leave_one_context_out(predicted: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray],
                          members: Mapping[str, np.ndarray] | None = None,
                          levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
    """Coverage of one model's intervals when each context in turn is the new one and the
    others calibrate it.

    `predicted[c]` / `real[c]`: the (ensemble) predicted and the real mean response of context
    c per gene, each context's prediction made without its perturbed cells (the benchmark's
    leave-one-out fits); `members[c]`: the seeds' predicted responses (seeds x genes), for the
    uncalibrated spread. The residuals of the N contexts are then exchangeable, so each row's
    coverage has the guarantee of the module docstring with N - 1 calibration contexts. But
    the mean over the N rows of a level is ceil(level N) / N by construction (each gene is
    covered on exactly that many contexts, whatever the residuals): only the spread across
    contexts is evidence, a context covered far less than the others being unlike them. One
    row per (context, level)."""
    contexts = sorted(predicted)
    residuals = {c: np.abs(np.asarray(real[c], np.float64) - predicted[c]) for c in contexts}
    rows = []
    for context in contexts:
        calibration = np.stack([residuals[c] for c in contexts if c != context])
        for level in levels:
            row = {"context": context, "level": level, "calibration_contexts": len(calibration),
                   **interval_scores(real[context], predicted[context],
                                     half_widths(calibration, level))}
            spread = members[context] if members is not None else np.zeros((1, 0))
            if len(spread) > 1:
                scores = interval_scores(real[context], predicted[context],
                                         seed_spread_half_widths(spread, level))
                row |= {"seed_spread_coverage": scores["coverage"],
                        "seed_spread_mean_width": scores["mean_width"]}
            rows.append(row)
    return pd.DataFrame(rows)
