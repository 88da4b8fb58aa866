"""What every estimator of the linear path shares: input checks, centring, folds, predict.

The estimators mirror scikit-learn's constructor arguments and fitted attributes, so a study
can swap `sklearn.linear_model.RidgeCV` for `perturbjax.linear.RidgeCV` without other edits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

Split = tuple[np.ndarray, np.ndarray]


def check_xy(x: Any, y: Any, *, multi_output: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copies of X (n, p) and y (n,) or (n, t), with a clear error for bad input."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"X must be a 2-D array (samples x features); got shape {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have {x.shape[0]} rows like X; got shape {y.shape}")
    if multi_output is True and y.ndim != 2:
        raise ValueError("y must be 2-D (samples x tasks) for a multi-task model")
    for name, array in (("X", x), ("y", y)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return x, y


def kfold(n_samples: int, n_splits: int) -> list[Split]:
    """scikit-learn's unshuffled `KFold`: contiguous test blocks, the first n % k one larger."""
    if not 2 <= n_splits <= n_samples:
        raise ValueError(f"cv={n_splits} folds need 2 <= folds <= n_samples ({n_samples})")
    sizes = np.full(n_splits, n_samples // n_splits)
    sizes[: n_samples % n_splits] += 1
    stops = np.cumsum(sizes)
    everything = np.arange(n_samples)
    return [(np.concatenate([everything[: stop - size], everything[stop:]]),
             everything[stop - size: stop]) for size, stop in zip(sizes, stops, strict=True)]


def cv_splits(cv: Any, x: np.ndarray, y: np.ndarray, default: int) -> list[Split]:
    """Resolve `cv` as scikit-learn does: None -> default folds, int -> KFold, a splitter
    object (anything with `.split(X, y)`, e.g. `GroupKFold` via a partial) or an iterable
    of (train, test) index pairs."""
    if cv is None:
        return kfold(x.shape[0], default)
    if isinstance(cv, int | np.integer):
        return kfold(x.shape[0], int(cv))
    pairs: Iterable[Split] = cv.split(x, y) if hasattr(cv, "split") else cv
    return [(np.asarray(train), np.asarray(test)) for train, test in pairs]


def centre(x: np.ndarray, y: np.ndarray, fit_intercept: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X - mean, y - mean, X mean, y mean); zero means when no intercept is fitted."""
    x_offset = x.mean(axis=0) if fit_intercept else np.zeros(x.shape[1])
    y_offset = y.mean(axis=0) if fit_intercept else np.zeros(y.shape[1:])
    return x - x_offset, y - y_offset, x_offset, y_offset


class LinearPredictor:
    """`predict` for a fitted `coef_` (t, p) or (p,) and `intercept_`."""

    coef_: np.ndarray
    intercept_: np.ndarray | float

    def predict(self, x: Any) -> np.ndarray:
        """X @ coef_.T + intercept_."""
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit first")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.coef_.shape[-1]:
            raise ValueError(f"X must have {self.coef_.shape[-1]} features; got shape {x.shape}")
        return x @ self.coef_.T + self.intercept_


def r2_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """`sklearn.metrics.r2_score(..., multioutput='raw_values')` along axis -2 (samples).

    A constant target scores 1 when predicted exactly and 0 otherwise, as scikit-learn's
    `force_finite=True` does.
    """
    ss_res = ((y_true - y_pred) ** 2).sum(axis=-2)
    ss_tot = ((y_true - y_true.mean(axis=-2, keepdims=True)) ** 2).sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - ss_res / ss_tot
    return np.where(ss_tot == 0, np.where(ss_res == 0, 1.0, 0.0), score)

