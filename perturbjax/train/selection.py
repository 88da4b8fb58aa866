"""What a run keeps: per member the best epoch and learning rate, and a warm start's state.

Early stopping is per fold: a fold stops when each of its members has gone `patience` epochs
without improving, and the epochs each fold ran are recorded. At the end, each (fold, seed)
keeps the learning rate with the lowest best validation loss (`select`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.train.config import TrainConfig
from perturbjax.train.members import FitResult
from perturbjax.train.state import TrainState


def warm_started(state: TrainState, start: FitResult, n_rates: int) -> TrainState:
    """`state` with its parameters replaced by `start`'s (one per (fold, seed) member)."""
    n_members = state.key.shape[0] // n_rates
    n_start = start.n_folds * len(start.seeds)
    if n_start != n_members:
        raise ValueError(f"warm_start has {n_start} (fold, seed) members; this fit trains "
                         f"{n_members}: use the same folds and seeds")
    repeat = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda a: jnp.repeat(jnp.asarray(a), n_rates, axis=0), tree)
    params, model_state = repeat(start.params), repeat(start.model_state)
    if (jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(state.params)
            or jax.tree_util.tree_structure(model_state)
            != jax.tree_util.tree_structure(state.model_state)):
        raise ValueError("warm_start's parameters do not fit this objective's model")
    copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # noqa: E731 (no shared buffers: the epoch donates the state)
    return state.replace(params=params, model_state=model_state, best_params=copy(params),
                         best_model_state=copy(model_state))


def folds_stopped(state: TrainState, epoch: int, patience: int | None, n_folds: int
                   ) -> np.ndarray:
    """Per fold, whether it has stopped before `epoch`: every one of its members went
    `patience` epochs without improving by the epoch before."""
    if patience is None or epoch == 0:
        return np.zeros(n_folds, bool)
    waited = (epoch - 1 - np.asarray(state.best_epoch)).reshape(n_folds, -1)
    return (waited >= patience).all(axis=1)


def epochs_per_fold(state: TrainState, epochs_run: int, patience: int | None, n_folds: int
                 ) -> np.ndarray:
    """The epochs each fold ran: a stopped fold ran until `patience` epochs past its
    members' last improvement."""
    epochs = np.full(n_folds, epochs_run)
    if patience is None:
        return epochs
    stopped = folds_stopped(state, epochs_run, patience, n_folds)
    last = np.asarray(state.best_epoch).reshape(n_folds, -1).max(axis=1)
    return np.where(stopped, np.minimum(last + patience + 1, epochs_run), epochs)


def select(state: TrainState, seeds: tuple[int, ...], config: TrainConfig,
            epochs_run: int, n_folds: int, devices: int, select_together: bool = False
            ) -> FitResult:
    """Per (fold, seed), the learning rate with the lowest best validation loss."""
    n_rates = len(config.learning_rates)
    fold_epochs = epochs_per_fold(state, epochs_run, config.patience, n_folds)
    best_val = np.asarray(state.best_val).reshape(n_folds * len(seeds), n_rates)
    chosen = np.arange(len(best_val)) * n_rates + best_val.argmin(axis=1)
    params = state.best_params if config.select_best else state.params
    model_state = state.best_model_state if config.select_best else state.model_state
    take = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[chosen], tree)  # noqa: E731
    return FitResult(
        seeds=seeds, params=take(params), model_state=take(model_state),
        learning_rate=np.asarray(state.learning_rate)[chosen],
        best_epoch=np.asarray(state.best_epoch)[chosen] if config.select_best
        else np.repeat(fold_epochs - 1, len(seeds)),
        epochs_run=epochs_run,
        train_loss=np.asarray(state.train_loss)[:, :epochs_run],
        val_loss=np.asarray(state.val_loss)[:, :epochs_run], devices=devices,
        n_folds=n_folds, fold_epochs=fold_epochs, select_together=select_together,
    )
