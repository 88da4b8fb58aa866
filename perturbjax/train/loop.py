"""The one training loop: scanned epochs, an ensemble axis trained by vmap, early stopping.

An epoch is a single jitted call: a `lax.scan` over shuffled mini-batches gathered from the
device-resident data, followed by the validation loss and the best-epoch bookkeeping. The
ensemble ("members": folds x seeds x learning rates) is a leading axis of every leaf of the
`TrainState`, trained by `jax.vmap` in the same compiled program and, when several devices are
present, sharded over them along that axis. The host sees the data once per epoch: a loss per
member for logging, early stopping and checkpoints.

The data are a table of rows (cells, or whatever the objective batches over) plus, optionally,
`shared` arrays every step sees whole (e.g. the cell pool that set models draw their bags from)
and `Folds`: cross-validation folds as members, each training on its own rows of the one
table, so a k-fold study is one program without a copy of the data per fold.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from perturbjax.progress import Progress
from perturbjax.train.checkpoint import Checkpointer
from perturbjax.train.config import TrainConfig, make_optimizer
from perturbjax.train.members import FitResult, Folds
from perturbjax.train.objective import ROW_WEIGHT, Batch, Objective
from perturbjax.train.selection import folds_stopped, select, warm_started
from perturbjax.train.state import TrainState
from perturbjax.train.trees import keep_if

logger = logging.getLogger("perturbjax")


def _n_cells(batch: Batch) -> int:
    return jax.tree_util.tree_leaves(batch)[0].shape[0]


def _n_steps(n_cells: int, batch_size: int) -> int:
    if n_cells < batch_size:
        raise ValueError(f"{n_cells} training cells are fewer than one batch of {batch_size}")
    return n_cells // batch_size


def _member_sharding(n_members: int) -> tuple[NamedSharding, NamedSharding] | None:
    """Shardings for the members axis and for replicated data, if several devices exist."""
    devices = jax.devices()
    if len(devices) < 2 or n_members % len(devices):
        return None
    mesh = Mesh(np.asarray(devices), ("members",))
    return NamedSharding(mesh, PartitionSpec("members")), NamedSharding(mesh, PartitionSpec())


def _gather(table: Batch, rows: jax.Array) -> Batch:
    return jax.tree_util.tree_map(lambda a: a[rows], table)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The static shape of an epoch: each fold's own training rows, and whether folds are
    padded (their steps and validation rows then need masks)."""

    train_sizes: tuple[int, ...]
    ragged: bool = False
    select_together: bool = False


class Trainer:
    """Compiles an objective's init and epoch once for given data shapes and configuration.

    `run_epoch` takes the training and validation tables, the `shared` arrays (or None),
    the per-member fold data of `Folds.per_member` (or None: every member trains on every
    training row and is validated on the whole validation table) and which members still
    run (a fold that stopped early keeps its state while the others go on)."""

    def __init__(self, objective: Objective, config: TrainConfig):
        self.objective = objective
        self.config = config
        self._init = jax.jit(jax.vmap(self._init_member, in_axes=(0, 0, None)))
        self._epoch = jax.jit(self._epoch_all, static_argnums=7, donate_argnums=0)

    def _init_member(self, key: jax.Array, learning_rate: jax.Array, example: Batch) -> TrainState:
        init_key, run_key = jax.random.split(key)
        params, model_state = self.objective.init(init_key, example)
        opt_state = self.objective.init_optimizer(make_optimizer(learning_rate, self.config),
                                                  params)
        history = jnp.full((self.config.epochs,), jnp.nan, jnp.float32)
        return TrainState(
            params=params, model_state=model_state, opt_state=opt_state,
            best_params=params, best_model_state=model_state, key=run_key,
            learning_rate=learning_rate, best_val=jnp.asarray(jnp.inf, jnp.float32),
            best_epoch=jnp.asarray(-1, jnp.int32), train_loss=history, val_loss=history,
        )

    def _orders(self, keys: jax.Array, epoch: jax.Array, layout: _Layout) -> jax.Array:
        """Each member's shuffled rows of its fold for the epoch, (members, steps x batch):
        a fold's permutation is drawn over its own rows, exactly as if it trained alone, and
        padded to the longest fold's steps."""
        batch_size = self.config.batch_size
        per_fold = keys.shape[0] // len(layout.train_sizes)
        width = max(_n_steps(n, batch_size) for n in layout.train_sizes) * batch_size

        def order_key(key: jax.Array) -> jax.Array:
            if self.config.shared_batch_order:
                return jax.random.fold_in(jax.random.PRNGKey(0), epoch)
            return jax.random.split(jax.random.fold_in(key, epoch))[0]

        orders = []
        for fold, n_rows in enumerate(layout.train_sizes):
            used = _n_steps(n_rows, batch_size) * batch_size
            order = jax.vmap(lambda k, n=n_rows, u=used: jax.random.permutation(
                order_key(k), n)[:u])(keys[fold * per_fold : (fold + 1) * per_fold])
            orders.append(jnp.pad(order, ((0, 0), (0, width - used))))
        return jnp.concatenate(orders)

    def _epoch_all(self, state: TrainState, train: Batch, validation: Batch,
                   shared: Batch | None, fold: dict | None, epoch: jax.Array,
                   running: jax.Array, layout: _Layout) -> TrainState:
        orders = self._orders(state.key, epoch, layout)
        member = functools.partial(self._train_member, ragged=layout.ragged)
        trained, val = jax.vmap(member, in_axes=(0, None, None, None, 0, None, 0))(
            state, train, validation, shared, fold, epoch, orders)
        score = val
        if layout.select_together:  # each (seed, rate): its mean over the folds, in every fold
            n_folds = len(layout.train_sizes)
            score = jnp.tile(val.reshape(n_folds, -1).mean(axis=0), n_folds)
        return jax.vmap(self._keep_best, in_axes=(0, 0, 0, 0, None, 0))(
            state, trained, val, score, epoch, running)

    def _train_member(self, state: TrainState, train: Batch, validation: Batch,
                      shared: Batch | None, fold: dict | None, epoch: jax.Array,
                      order: jax.Array, ragged: bool) -> tuple[TrainState, jax.Array]:
        """One member's epoch of steps: its trained state (best-epoch bookkeeping aside)
        and its validation loss."""
        extra = {**(shared or {}), **(fold["arrays"] if fold else {})}
        n_steps = order.shape[0] // self.config.batch_size
        own_steps = fold["n_steps"] if ragged else n_steps
        step_key = jax.random.split(jax.random.fold_in(state.key, epoch))[1]
        if fold:
            order = fold["train_rows"][order]
        tx = make_optimizer(state.learning_rate, self.config)

        def step(carry, xs):
            indices, i = xs
            batch = {**_gather(train, indices), **extra}
            *updated, loss = self.objective.train_step(
                *carry, batch, jax.random.fold_in(step_key, i), tx, epoch)
            if ragged:  # a step past the fold's own leaves its members as they are
                updated = keep_if(i < own_steps, tuple(updated), carry)
            return tuple(updated), loss

        (params, model_state, opt_state), losses = jax.lax.scan(
            step, (state.params, state.model_state, state.opt_state),
            (order.reshape(n_steps, -1), jnp.arange(n_steps)),
        )
        train_loss = (jnp.where(jnp.arange(n_steps) < own_steps, losses, 0.0).sum() / own_steps
                      if ragged else losses.mean())
        if fold:
            validation = _gather(validation, fold["validation_rows"])
            if ragged:
                rows = jnp.arange(fold["validation_rows"].shape[0])
                validation = {**validation,
                              ROW_WEIGHT: (rows < fold["n_validation"]).astype(jnp.float32)}
        val = self.objective.selection_loss(params, model_state, {**validation, **extra})
        trained = state.replace(params=params, model_state=model_state, opt_state=opt_state,
                                train_loss=state.train_loss.at[epoch].set(train_loss))
        return trained, val

    def _keep_best(self, state: TrainState, trained: TrainState, val: jax.Array,
                   score: jax.Array, epoch: jax.Array, running: jax.Array) -> TrainState:
        """Record the epoch's validation loss and keep the parameters if `score` (the loss
        model selection reads) improved; a member that is not `running` keeps `state`."""
        patience = self.config.patience
        still_waiting = (True if patience is None
                         else epoch - state.best_epoch <= patience)
        improved = (score < state.best_val) & still_waiting
        kept = trained.replace(
            best_params=keep_if(improved, trained.params, state.best_params),
            best_model_state=keep_if(improved, trained.model_state, state.best_model_state),
            best_val=jnp.where(improved, score, state.best_val),
            best_epoch=jnp.where(improved, epoch, state.best_epoch).astype(jnp.int32),
            val_loss=state.val_loss.at[epoch].set(val),
        )
        return keep_if(running, kept, state)

    def cost_per_epoch(self, state: TrainState, train: Batch, validation: Batch,
                       shared: Batch | None = None, folds: Folds | None = None) -> float:
        """Floating-point operations of one epoch, all members: XLA's count for one compiled
        step times the steps, plus the validation pass (with `folds`, of the first fold's own
        rows). XLA counts a scan's body once, so the compiled epoch itself cannot be asked.
        A model with training phases is counted in its first."""
        own = folds.own_rows(0) if folds else None
        train_rows = jnp.asarray(own[0]) if folds else jnp.arange(_n_cells(train))
        extra = {**(shared or {}),
                 **{k: jnp.asarray(v[0]) for k, v in (folds.arrays if folds else {}).items()}}
        n_steps = _n_steps(len(train_rows), self.config.batch_size)
        batch = {**_gather(train, train_rows[: self.config.batch_size]), **extra}
        if folds:
            validation = _gather(validation, jnp.asarray(own[1]))
        validation = {**validation, **extra}

        def step(state: TrainState, key: jax.Array):
            tx = make_optimizer(state.learning_rate, self.config)
            return self.objective.train_step(state.params, state.model_state, state.opt_state,
                                             batch, key, tx, jnp.int32(0))

        def flops(fn, *args) -> float:
            analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
            analysis = analysis[0] if isinstance(analysis, list) else analysis
            return float(analysis.get("flops", float("nan")))

        step_flops = flops(jax.vmap(step), state, state.key)
        val_flops = flops(jax.vmap(self.objective.selection_loss, in_axes=(0, 0, None)),
                          state.params, state.model_state, validation)
        return n_steps * step_flops + val_flops

    def init(self, seeds: Sequence[int], train: Batch, shared: Batch | None = None,
             folds: Folds | None = None) -> TrainState:
        """Fresh states for every (fold, seed, learning rate) member, fold-major."""
        rates = self.config.learning_rates
        n_folds = folds.n_folds if folds else 1
        keys = jnp.stack([jax.random.PRNGKey(s) for _ in range(n_folds) for s in seeds
                          for _ in rates])
        lrs = jnp.asarray([r for _ in range(n_folds) for _ in seeds for r in rates],
                          jnp.float32)
        example = {**_gather(train, jnp.arange(min(2, _n_cells(train)))), **(shared or {}),
                   **{k: jnp.asarray(v[0]) for k, v in (folds.arrays if folds else {}).items()}}
        return self._init(keys, lrs, example)

    def run_epoch(self, state: TrainState, train: Batch, validation: Batch, epoch: int,
                  shared: Batch | None = None, member_folds: dict | None = None,
                  folds: Folds | None = None, running: np.ndarray | None = None
                  ) -> TrainState:
        """One epoch of every member (`member_folds` from `folds.per_member`); members
        where `running` is False keep their state."""
        layout = (_Layout(tuple(int(n) for n in folds.counts()[0]), folds.is_ragged,
                          folds.select_together) if folds
                  else _Layout((_n_cells(train),)))
        running = (np.ones(state.key.shape[0], bool) if running is None
                   else np.asarray(running, bool))
        return self._epoch(state, train, validation, shared, member_folds, jnp.int32(epoch),
                           jnp.asarray(running), layout)


EpochCallback = Callable[[int, TrainState], None]


@functools.lru_cache(maxsize=32)
def _cached_trainer(objective: Objective, config: TrainConfig) -> Trainer:
    return Trainer(objective, config)


def trainer_for(objective: Objective, config: TrainConfig) -> Trainer:
    """The Trainer of an (objective, configuration) pair, kept for reuse: jit caches compiled
    programs per Trainer, so fitting the same model again on data of the same shapes (another
    seed alone, a rerun, a resumed run) compiles nothing. Unhashable objectives get a new one."""
    try:
        hash((objective, config))
    except TypeError:
        return Trainer(objective, config)
    return _cached_trainer(objective, config)


def log_epoch(epoch: int, state: TrainState, total: int, progress: Progress | None = None
              ) -> None:
    """One progress line per epoch: mean train / validation loss over the members, the best
    epochs, and (with `progress`) seconds per epoch and the time left at most (early
    stopping may end sooner)."""
    train = np.asarray(state.train_loss[:, epoch])
    val = np.asarray(state.val_loss[:, epoch])
    timing = (f"  {progress.per_step(epoch + 1):.2f} s/epoch, at most {progress.left(epoch + 1)}"
              " left" if progress else "")
    logger.info("epoch %d/%d  train %.5f  val %.5f  best epochs %s%s", epoch + 1, total,
                train.mean(), val.mean(), (np.asarray(state.best_epoch) + 1).tolist(), timing)


def _check_keys(train: Batch, shared: Batch | None, folds: Folds | None) -> None:
    """The objective sees rows, shared arrays and fold arrays as one dict: names must differ
    (and leave the loop's own `row_weight` alone)."""
    names = [*train, *(shared or {}), *(folds.arrays if folds else {}), ROW_WEIGHT]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"the training table, shared arrays and fold arrays repeat {clashes}")


def fit(
    objective: Objective,
    train: Batch,
    validation: Batch,
    seeds: Sequence[int],
    config: TrainConfig,
    workdir: str | Path | None = None,
    fingerprint: dict | None = None,
    on_epoch: EpochCallback | None = None,
    shared: Batch | None = None,
    folds: Folds | None = None,
    warm_start: FitResult | None = None,
) -> FitResult:
    """Train one member per (fold, seed, learning rate) as a single vmapped program.

    `train` / `validation` are tables of rows batched over; `shared` arrays reach every step
    whole; with `folds`, each fold's members train and validate on their own rows of those
    tables (see `Folds`). With `workdir` and `config.checkpoint_every`, the state is saved
    every that many epochs and a later call with the same arguments resumes from the newest
    checkpoint, reaching the same final parameters as an uninterrupted run.
    `on_epoch(epoch, state)` runs after each epoch (the default logs a progress line).
    `warm_start`: the members begin at that earlier result's parameters (its (fold, seed)
    members, each repeated for every learning rate) with a fresh optimiser: fine-tuning.
    """
    seeds = tuple(int(s) for s in seeds)
    _check_keys(train, shared, folds)
    trainer = trainer_for(objective, config)
    n_folds = folds.n_folds if folds else 1
    if folds:
        folds.check_rows(_n_cells(train), _n_cells(validation))
        if folds.is_ragged and not objective.weighs_validation_rows:
            raise ValueError(f"{type(objective).__name__} does not weigh its validation rows "
                             "(`row_mean`, `weighs_validation_rows`): folds of different sizes "
                             "would validate on their padding")
    # Refuse a too-large batch before compiling.
    _n_steps(int(folds.counts()[0].min()) if folds else _n_cells(train), config.batch_size)
    per_fold = len(seeds) * len(config.learning_rates)
    n_members = n_folds * per_fold
    shardings = _member_sharding(n_members)
    replicated = shardings[1] if shardings else None
    train, validation, shared = jax.device_put((train, validation, shared), replicated)
    member_folds = folds.per_member(per_fold, config.batch_size) if folds else None
    state = trainer.init(seeds, train, shared, folds)
    if warm_start is not None:
        state = warm_started(state, warm_start, len(config.learning_rates))
    if shardings:
        state, member_folds = jax.device_put((state, member_folds), shardings[0])

    checkpointer, start = None, 0
    if workdir is not None and config.checkpoint_every:
        shapes = {k: list(v.shape) for k, v in {**train, **(shared or {})}.items()}
        run_fingerprint = {
            "train_config": dataclasses.asdict(config), "seeds": seeds, "shapes": shapes,
            "folds": [folds.own_rows(f)[0].tolist() for f in range(n_folds)] if folds
            else None,
            **(fingerprint or {}),
        }
        checkpointer = Checkpointer(Path(workdir) / "checkpoints", run_fingerprint)
        latest = checkpointer.latest_epoch()
        if latest is not None:
            state, start = checkpointer.restore(latest, state), latest
            logger.info("resumed from the checkpoint after epoch %d in %s", latest, workdir)

    epochs_run = start
    member_shape = (n_folds, len(seeds), len(config.learning_rates))
    progress = Progress(config.epochs, first=start)
    try:
        for epoch in range(start, config.epochs):
            # Checked before the epoch, so a run resumed from its last checkpoint stops where
            # the uninterrupted run stopped; a fold stops alone, as it would trained alone.
            stopped = folds_stopped(state, epoch, config.patience, n_folds)
            if stopped.all():
                logger.info("early stop after epoch %d: no member improved for %d epochs",
                            epoch, config.patience)
                break
            running = np.repeat(~stopped, per_fold)
            state = trainer.run_epoch(state, train, validation, epoch, shared, member_folds,
                                      folds, running)
            epochs_run = epoch + 1
            losses = np.asarray(state.train_loss[:, epoch])
            if not np.isfinite(losses[running]).all():
                bad = [tuple(int(i) for i in np.unravel_index(m, member_shape))
                       for m in np.flatnonzero(~np.isfinite(losses) & running)]
                raise FloatingPointError(
                    f"non-finite training loss at epoch {epoch + 1} for (fold, seed index, "
                    f"learning-rate index) {bad}; lower the learning rate or check the data"
                )
            (on_epoch or (lambda e, s: log_epoch(e, s, config.epochs, progress)))(epoch, state)
            if checkpointer and epochs_run % config.checkpoint_every == 0:
                checkpointer.save(epochs_run, state)
    finally:
        if checkpointer:
            checkpointer.close()
    return select(state, seeds, config, epochs_run, n_folds,
                   devices=len(jax.devices()) if shardings else 1,
                   select_together=bool(folds and folds.select_together))
