"""The ensemble axis: cross-validation folds as members, the trained members, and applying
every member at once (one vmapped program, in chunks of rows)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.train.objective import Batch, Objective, PyTree


@dataclasses.dataclass(frozen=True)
class Folds:
    """Cross-validation folds trained side by side: fold f trains on rows `train_rows[f]` of the
    training table and is validated on rows `validation_rows[f]` of the validation table.
    Every fold has the same number of rows (one compiled program); `arrays` are per-fold
    constants (leading axis = folds) handed to the objective with every batch, e.g. loss
    weights computed from the fold's own training rows."""

    train_rows: np.ndarray
    validation_rows: np.ndarray
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        train, val = np.asarray(self.train_rows), np.asarray(self.validation_rows)
        if train.ndim != 2 or val.ndim != 2 or len(train) != len(val) or not len(train):
            raise ValueError("Folds: train_rows and validation_rows must be (folds, rows) integer "
                             f"arrays with the same number of folds, got {train.shape} and "
                             f"{val.shape}")
        bad = [k for k, a in self.arrays.items() if np.shape(a)[:1] != (len(train),)]
        if bad:
            raise ValueError(f"Folds.arrays {bad} must have a leading axis of {len(train)} folds")

    @property
    def n_folds(self) -> int:
        return len(self.train_rows)

    def check_rows(self, n_train: int, n_validation: int) -> None:
        """Refuse row indices outside the tables (a gather would silently clip them)."""
        for name, rows, n in (("train_rows", self.train_rows, n_train),
                              ("validation_rows", self.validation_rows, n_validation)):
            if np.min(rows) < 0 or np.max(rows) >= n:
                raise ValueError(f"Folds.{name} must index rows 0..{n - 1} of its table")

    def per_member(self, repeats: int) -> dict:
        """Each fold's rows and arrays repeated for its seeds x learning rates (fold-major):
        {'train_rows', 'validation_rows', 'arrays'}."""
        repeat = lambda a: jnp.repeat(jnp.asarray(a), repeats, axis=0)  # noqa: E731
        return {"train_rows": repeat(self.train_rows),
                "validation_rows": repeat(self.validation_rows),
                "arrays": {k: repeat(v) for k, v in self.arrays.items()}}


@dataclasses.dataclass
class FitResult:
    """Per-(fold, seed) parameters chosen on validation, with the whole history.

    `params` / `model_state` have a leading axis of folds x seeds, fold-major (without folds:
    one fold, so simply seeds); each holds the learning rate with the lowest best validation
    loss for that (fold, seed), and `learning_rate` is that rate.
    `train_loss` / `val_loss` are (members, epochs_run) with members ordered fold, seed, rate.
    `devices` is the number of devices the members axis was sharded over.
    """

    seeds: tuple[int, ...]
    params: PyTree
    model_state: PyTree
    learning_rate: np.ndarray
    best_epoch: np.ndarray
    epochs_run: int
    train_loss: np.ndarray
    val_loss: np.ndarray
    devices: int = 1
    n_folds: int = 1


def apply_members(fn: Callable[[PyTree, PyTree, Any], jax.Array], result: FitResult,
                  rows: Any, chunk: int = 4096, per_member: bool = False,
                  shared: Batch | None = None) -> np.ndarray:
    """`fn(params, model_state, rows)` for every (fold, seed) member, in chunks of rows, as
    one vmapped program: array (members, rows, ...). `rows` (an array or a dict of arrays)
    holds the rows on axis 0, the same for every member, or with `per_member` on axis 1, one
    slice per member; `shared` arrays (a dict `rows`) are given whole with every chunk."""
    apply = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0 if per_member else None)))
    axis = 1 if per_member else 0
    n = jax.tree_util.tree_leaves(rows)[0].shape[axis]
    parts = []
    for start in range(0, n, chunk):
        part = jax.tree_util.tree_map(
            lambda a, s=start: a[:, s : s + chunk] if per_member else a[s : s + chunk], rows)
        if shared:
            part = {**part, **shared}
        parts.append(np.asarray(apply(result.params, result.model_state, part)))
    n_members = result.n_folds * len(result.seeds)
    return np.concatenate(parts, axis=1) if parts else np.zeros((n_members, 0))


def predict_members(objective: Objective, result: FitResult, batch: Batch,
                    chunk: int = 4096, shared: Batch | None = None) -> np.ndarray:
    """`objective.predict` for every (fold, seed) member on the same batch, in chunks of rows
    (`shared` arrays are given whole with every chunk): array (members, rows, ...)."""
    return apply_members(objective.predict, result, batch, chunk, shared=shared)
