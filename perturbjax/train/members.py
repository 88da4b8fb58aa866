"""The ensemble axis: cross-validation folds as members, the trained members, and applying
every member at once (one vmapped program, in chunks of rows)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.train.objective import Batch, Objective, PyTree


@dataclasses.dataclass(frozen=True)
class Folds:
    """Cross-validation folds trained side by side: fold f trains on rows `train_rows[f]` of the
    training table and is validated on rows `validation_rows[f]` of the validation table.
    `arrays` are per-fold constants (leading axis = folds) handed to the objective with every
    batch, e.g. loss weights computed from the fold's own training rows.

    Folds of different sizes (`Folds.ragged`, e.g. one per held-out context) are padded to
    the largest: `train_counts[f]` / `validation_counts[f]` say how many of a fold's rows are
    its own. Such a fold takes its own number of steps per epoch (the steps past them leave
    its members unchanged) and is validated on its own rows only (the objective receives a
    `row_weight` of 0 on the padding), so it trains as it would alone.

    `select_together` makes the folds inner hold-outs of one model: each (seed, learning
    rate) chooses its epoch, and then its rate, by its validation loss averaged over the
    folds, so every fold of a seed stops and is kept at the same epoch and rate.
    """

    train_rows: np.ndarray
    validation_rows: np.ndarray
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    train_counts: np.ndarray | None = None
    validation_counts: np.ndarray | None = None
    select_together: bool = False

    def __post_init__(self) -> None:
        train, val = np.asarray(self.train_rows), np.asarray(self.validation_rows)
        if train.ndim != 2 or val.ndim != 2 or len(train) != len(val) or not len(train):
            raise ValueError("Folds: train_rows and validation_rows must be (folds, rows) integer "
                             f"arrays with the same number of folds, got {train.shape} and "
                             f"{val.shape}")
        bad = [k for k, a in self.arrays.items() if np.shape(a)[:1] != (len(train),)]
        if bad:
            raise ValueError(f"Folds.arrays {bad} must have a leading axis of {len(train)} folds")
        for name, counts, width in (("train_counts", self.train_counts, train.shape[1]),
                                    ("validation_counts", self.validation_counts, val.shape[1])):
            if counts is not None and (np.shape(counts) != (len(train),)
                                       or np.min(counts) < 1 or np.max(counts) > width):
                raise ValueError(f"Folds.{name} must give each of the {len(train)} folds "
                                 f"1..{width} rows, got {counts}")

    @classmethod
    def ragged(cls, train_rows: Sequence[np.ndarray], validation_rows: Sequence[np.ndarray],
               arrays: dict[str, np.ndarray] | None = None, select_together: bool = False
               ) -> Folds:
        """Folds of any sizes: each fold's rows, padded (with row 0) to the largest."""
        def padded(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            counts = np.asarray([len(r) for r in rows])
            table = np.zeros((len(rows), counts.max(initial=1)), np.int64)
            for f, r in enumerate(rows):
                table[f, : len(r)] = r
            return table, counts

        (train, n_train), (val, n_val) = padded(train_rows), padded(validation_rows)
        return cls(train, val, arrays or {}, n_train, n_val, select_together)

    @property
    def n_folds(self) -> int:
        return len(self.train_rows)

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows) of each fold's own."""
        train, val = np.asarray(self.train_rows), np.asarray(self.validation_rows)
        return (np.full(len(train), train.shape[1]) if self.train_counts is None
                else np.asarray(self.train_counts),
                np.full(len(val), val.shape[1]) if self.validation_counts is None
                else np.asarray(self.validation_counts))

    @property
    def is_ragged(self) -> bool:
        """Whether some fold has fewer rows than the table is wide (padding to mask)."""
        train, val = self.counts()
        return bool((train < np.shape(self.train_rows)[1]).any()
                    or (val < np.shape(self.validation_rows)[1]).any())

    def own_rows(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows) of fold `fold`, without padding."""
        train, val = self.counts()
        return (np.asarray(self.train_rows)[fold, : train[fold]],
                np.asarray(self.validation_rows)[fold, : val[fold]])

    def check_rows(self, n_train: int, n_validation: int) -> None:
        """Refuse row indices outside the tables (a gather would silently clip them)."""
        for name, rows, n in (("train_rows", self.train_rows, n_train),
                              ("validation_rows", self.validation_rows, n_validation)):
            if np.min(rows) < 0 or np.max(rows) >= n:
                raise ValueError(f"Folds.{name} must index rows 0..{n - 1} of its table")

    def per_member(self, repeats: int, batch_size: int) -> dict:
        """Each fold's rows, arrays and counts repeated for its seeds x learning rates
        (fold-major): {'train_rows', 'validation_rows', 'arrays', 'n_steps',
        'n_validation'}; `n_steps` is the fold's own steps per epoch."""
        repeat = lambda a: jnp.repeat(jnp.asarray(a), repeats, axis=0)  # noqa: E731
        train, val = self.counts()
        return {"train_rows": repeat(self.train_rows),
                "validation_rows": repeat(self.validation_rows),
                "arrays": {k: repeat(v) for k, v in self.arrays.items()},
                "n_steps": repeat((train // batch_size).astype(np.int32)),
                "n_validation": repeat(val.astype(np.int32))}


@dataclasses.dataclass
class FitResult:
    """Per-(fold, seed) parameters chosen on validation, with the whole history.

    `params` / `model_state` have a leading axis of folds x seeds, fold-major (without folds:
    one fold, so simply seeds); each holds the learning rate with the lowest best validation
    loss for that (fold, seed), and `learning_rate` is that rate.
    `train_loss` / `val_loss` are (members, epochs_run) with members ordered fold, seed, rate.
    `devices` is the number of devices the members axis was sharded over. `fold_epochs` is
    the epochs each fold ran (a fold stops early on its own; `epochs_run` is the longest).
    `select_together`: the folds are inner hold-outs of one model (`Folds.select_together`),
    so each seed predicts with the mean of its folds' members (`apply_members`).
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
    fold_epochs: np.ndarray | None = None
    select_together: bool = False

    def fold(self, fold: int) -> FitResult:
        """Fold `fold`'s members alone, as if it had been trained by itself."""
        if not 0 <= fold < self.n_folds:
            raise IndexError(f"fold {fold} of a result with {self.n_folds} folds")
        n_seeds, n_runs = len(self.seeds), len(self.train_loss) // self.n_folds
        chosen = slice(fold * n_seeds, (fold + 1) * n_seeds)
        runs = slice(fold * n_runs, (fold + 1) * n_runs)
        epochs = (self.epochs_run if self.fold_epochs is None
                  else int(self.fold_epochs[fold]))
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[chosen], tree)  # noqa: E731
        return FitResult(
            seeds=self.seeds, params=take(self.params), model_state=take(self.model_state),
            learning_rate=self.learning_rate[chosen], best_epoch=self.best_epoch[chosen],
            epochs_run=epochs, train_loss=self.train_loss[runs, :epochs],
            val_loss=self.val_loss[runs, :epochs], devices=self.devices)


@functools.lru_cache(maxsize=64)
def _cached_applier(fn: Callable, per_member: bool) -> Callable:
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0 if per_member else None)))


def _member_applier(fn: Callable, per_member: bool) -> Callable:
    """`fn` vmapped over members and jitted, kept per (fn, per_member) so that predicting
    again with rows of a shape seen before does not compile again (an unhashable `fn`, e.g.
    a method of an objective holding arrays, compiles every time)."""
    try:
        hash(fn)
    except TypeError:
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0 if per_member else None)))
    return _cached_applier(fn, per_member)


def apply_members(fn: Callable[[PyTree, PyTree, Any], jax.Array], result: FitResult,
                  rows: Any, chunk: int = 4096, per_member: bool = False,
                  shared: Batch | None = None) -> np.ndarray:
    """`fn(params, model_state, rows)` for every (fold, seed) member, in chunks of rows, as
    one vmapped program: array (members, rows, ...), or (seeds, rows, ...) for a result
    whose folds select together (each seed: the mean of its folds). `rows` (an array or a
    dict of arrays) holds the rows on axis 0, the same for every member, or with
    `per_member` on axis 1, one slice per member; `shared` arrays (a dict `rows`) are given
    whole with every chunk."""
    apply = _member_applier(fn, per_member)
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
    values = np.concatenate(parts, axis=1) if parts else np.zeros((n_members, 0))
    if result.select_together:
        values = values.reshape(result.n_folds, len(result.seeds), *values.shape[1:]).mean(0)
    return values


def predict_members(objective: Objective, result: FitResult, batch: Batch,
                    chunk: int = 4096, shared: Batch | None = None) -> np.ndarray:
    """`objective.predict` for every (fold, seed) member on the same batch, in chunks of rows
    (`shared` arrays are given whole with every chunk): array (members, rows, ...)."""
    return apply_members(objective.predict, result, batch, chunk, shared=shared)
