"""A hyper-parameter grid of MLP regressors trained as one compiled program.

The original code searched its grid with a Python loop (scikit-learn's `ParameterGrid`), one
training run after another. Here every (grid point, fold, seed) run of the whole search is one
`jax.jit` call:

- runs whose arrays have the same shapes (hidden sizes, batch size) form a group trained by
  one `vmap`; activation and learning rate are per-member arrays, so they cost no new program;
- epochs are snapshots: a member is trained for the largest epoch count of its group and
  predicted after each smaller one, which is exactly the shorter run (same initialisation,
  same batch order);
- the groups are traced into one function, so XLA sees the whole search as one program and
  the host syncs once, at the end;
- a NaN guard replaces the original code's abort: a member whose loss turns non-finite keeps
  its last finite parameters, stops updating and is flagged `diverged`.

Members of one group that share (fold, seed) share their initialisation and batch order
(common random numbers), so configurations are compared on equal terms.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from perturbjax.models.mlp_regressor import MLPRegressor
from perturbjax.train import TrainConfig, make_optimizer
from perturbjax.train.objective import PyTree
from perturbjax.train.trees import keep_if

ACTIVATIONS = ("relu", "tanh")
# The shared loop's optimiser with its defaults: plain Adam, no warm-up, no weight decay.
ADAM = TrainConfig()
PREDICT_CHUNK = 16  # members predicted at once at a snapshot (bounds the gathered features)


@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One configuration of the original code's grid."""

    hidden: tuple[int, ...]
    activation: str
    learning_rate: float
    batch_size: int
    epochs: int

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got '{self.activation}'")
        if (not self.hidden or min(self.hidden) < 1 or self.batch_size < 1 or self.epochs < 1
                or not self.learning_rate > 0):
            raise ValueError(f"invalid grid point {self}: hidden sizes, batch size and epochs "
                             "must be >= 1 and the learning rate > 0")


def parameter_grid(hidden: Sequence[Sequence[int]], activation: Sequence[str],
                   learning_rate: Sequence[float], batch_size: Sequence[int],
                   epochs: Sequence[int]) -> list[GridPoint]:
    """Every combination, in scikit-learn's `ParameterGrid` order (keys sorted, last fastest)."""
    combos = itertools.product(activation, batch_size, epochs, hidden, learning_rate)
    return [GridPoint(tuple(h), a, float(lr), int(b), int(e)) for a, b, e, h, lr in combos]


# The original grid: its best point (tanh, batch 16, 100 epochs, 32-16 units, lr 0.01) and the
# neighbours its text names on every axis.
ORIGINAL_GRID = parameter_grid(
    hidden=((32, 16), (64, 32), (128, 64)), activation=("relu", "tanh"),
    learning_rate=(1e-3, 1e-2), batch_size=(16, 32), epochs=(50, 100),
)


@dataclasses.dataclass(frozen=True)
class GridData:
    """The design of every fold, on the device once for the whole grid.

    features: (folds, lines, genes) float32, each fold standardised on its own training rows.
    targets: (folds, lines) float32, standardised the same way.
    train_rows: (folds, max_train) int32 row indices; entries past `n_train[f]` are padding.
    n_train: (folds,) number of training rows per fold.
    """

    features: np.ndarray
    targets: np.ndarray
    train_rows: np.ndarray
    n_train: np.ndarray

    def __post_init__(self) -> None:
        f, n, _ = self.features.shape
        shapes_agree = (self.targets.shape == (f, n) and self.train_rows.shape[0] == f
                        and self.n_train.shape == (f,))
        if not shapes_agree:
            raise ValueError(f"inconsistent fold data shapes: features {self.features.shape}, "
                             f"targets {self.targets.shape}, train_rows {self.train_rows.shape}, "
                             f"n_train {self.n_train.shape}")
        if not np.isfinite(self.features).all() or not np.isfinite(self.targets).all():
            raise ValueError("fold features and targets must be finite")


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One training run: a grid point on one fold from one seed."""

    point: GridPoint
    fold: int
    seed: int


@dataclasses.dataclass
class GridResult:
    """Predictions of every run for every line of its fold (standardised target units).

    `predictions[i]` and `diverged[i]` belong to `runs[i]`; `final_loss[i]` is its mean
    training loss in its last epoch. `params[i]` (with `keep_params`) are its parameters.
    """

    runs: list[GridRun]
    predictions: np.ndarray
    diverged: np.ndarray
    final_loss: np.ndarray
    params: list[PyTree] | None = None


def product_runs(points: Sequence[GridPoint], folds: Sequence[int],
                 seeds: Sequence[int]) -> list[GridRun]:
    """Every (point, fold, seed) combination, point-major."""
    return [GridRun(p, f, s) for p in points for f in folds for s in seeds]


def _group_key(point: GridPoint) -> tuple:
    return point.hidden, point.batch_size


def _member_key(run: GridRun) -> tuple:
    return run.point.activation, run.point.learning_rate, run.fold, run.seed


@functools.lru_cache(maxsize=64)
def _program(signature: tuple, keep_params: bool) -> Callable:
    """The jitted program for a tuple of groups (hidden, batch, snapshots, steps per epoch)."""

    def train_group(hidden, batch_size, snapshots, n_steps, members, data):
        module = MLPRegressor(hidden)
        features, targets, train_rows, n_train = data
        n_genes = features.shape[-1]

        def init(key, lr):
            params = module.init(key, jnp.zeros((1, n_genes)), jnp.asarray(False))["params"]
            return params, make_optimizer(lr, ADAM).init(params)

        def loss_fn(params, x, y, use_tanh):
            return jnp.mean((module.apply({"params": params}, x, use_tanh) - y) ** 2)

        def epoch(member, carry, epoch_index):
            fold, use_tanh, lr, key = member
            params, opt_state, diverged, _ = carry
            order_key = jax.random.fold_in(key, epoch_index)
            valid = jnp.arange(train_rows.shape[1]) < n_train[fold]
            scores = jnp.where(valid, jax.random.uniform(order_key, valid.shape), 2.0)
            order = jnp.argsort(scores)[: n_steps * batch_size].reshape(n_steps, batch_size)

            def step(state, positions):
                params, opt_state, diverged = state
                rows = train_rows[fold, positions]
                loss, grads = jax.value_and_grad(loss_fn)(
                    params, features[fold, rows], targets[fold, rows], use_tanh)
                updates, new_opt = make_optimizer(lr, ADAM).update(grads, opt_state)
                new_params = optax.apply_updates(params, updates)
                bad = diverged | ~jnp.isfinite(loss)
                return (keep_if(~bad, new_params, params), keep_if(~bad, new_opt, opt_state),
                        bad), loss

            (params, opt_state, diverged), losses = jax.lax.scan(
                step, (params, opt_state, diverged), order)
            return (params, opt_state, diverged, losses.mean())

        def predict(args):
            params, fold, use_tanh = args
            return module.apply({"params": params}, features[fold], use_tanh)

        keys = members["key"]
        n_members, n_lines = keys.shape[0], features.shape[1]
        params, opt_state = jax.vmap(init)(keys, members["lr"])
        member_args = (members["fold"], members["use_tanh"], members["lr"], keys)
        vmapped_epoch = jax.vmap(epoch, in_axes=(0, 0, None))
        # epoch e (0-based) ends snapshot snapshot_of[e], or -1: one scan body for all of them
        snapshot_of = jnp.full(snapshots[-1], -1).at[jnp.asarray(snapshots) - 1].set(
            jnp.arange(len(snapshots)))

        def take_snapshot(state, outputs, index):
            members_now = (state[0], members["fold"], members["use_tanh"])
            return outputs.at[index].set(
                jax.lax.map(predict, members_now, batch_size=PREDICT_CHUNK))

        def train_epoch(carry, e):
            state, outputs = carry
            state = vmapped_epoch(member_args, state, e)
            index = snapshot_of[e]
            outputs = jax.lax.cond(index >= 0, take_snapshot, lambda s, o, i: o,
                                   state, outputs, index)
            return (state, outputs), None

        state = (params, opt_state, jnp.zeros(n_members, bool), jnp.zeros(n_members, jnp.float32))
        outputs = jnp.zeros((len(snapshots), n_members, n_lines), jnp.float32)
        (state, outputs), _ = jax.lax.scan(train_epoch, (state, outputs),
                                           jnp.arange(snapshots[-1]))
        return outputs, state[2], state[3], state[0] if keep_params else None

    def program(all_members, data):
        return [train_group(*group, members, data)
                for group, members in zip(signature, all_members, strict=True)]

    return jax.jit(program)


def train_runs(runs: Sequence[GridRun], data: GridData, keep_params: bool = False) -> GridResult:
    """Train every run as one compiled program and predict every line of each run's fold."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to train")
    n_folds = data.features.shape[0]
    bad_folds = sorted({r.fold for r in runs if not 0 <= r.fold < n_folds})
    if bad_folds:
        raise ValueError(f"runs name folds {bad_folds}, but the data has {n_folds} folds")
    groups: dict[tuple, dict[tuple, set[int]]] = {}
    for run in runs:
        groups.setdefault(_group_key(run.point), {}).setdefault(
            _member_key(run), set()).add(run.point.epochs)
    if keep_params and any(len({e for es in g.values() for e in es}) > 1 for g in groups.values()):
        raise ValueError("keep_params needs one epoch count per (hidden, batch_size) group")

    signature, member_arrays, layout = [], [], {}
    min_train = int(data.n_train.min())
    for g, ((hidden, batch_size), members) in enumerate(groups.items()):
        if min_train < batch_size:
            raise ValueError(f"a fold has {min_train} training lines, fewer than one batch "
                             f"of {batch_size}")
        snapshots = tuple(sorted({e for es in members.values() for e in es}))
        signature.append((hidden, batch_size, snapshots, min_train // batch_size))
        keys = list(members)
        member_arrays.append({
            "fold": jnp.asarray([k[2] for k in keys], jnp.int32),
            "use_tanh": jnp.asarray([k[0] == "tanh" for k in keys]),
            "lr": jnp.asarray([k[1] for k in keys], jnp.float32),
            "key": jnp.stack([jax.random.fold_in(jax.random.PRNGKey(k[3]), k[2]) for k in keys]),
        })
        for m, key in enumerate(keys):
            for e in members[key]:
                layout[(hidden, batch_size, *key, e)] = (g, m, snapshots.index(e))

    device_data = (jnp.asarray(data.features, jnp.float32), jnp.asarray(data.targets, jnp.float32),
                   jnp.asarray(data.train_rows, jnp.int32), jnp.asarray(data.n_train, jnp.int32))
    program = _program(tuple(signature), keep_params)
    outputs = jax.device_get(program(member_arrays, device_data))

    where = [layout[(*_group_key(r.point), *_member_key(r), r.point.epochs)] for r in runs]
    take = lambda tree, m: jax.tree_util.tree_map(lambda a: a[m], tree)  # noqa: E731
    return GridResult(
        runs=runs,
        predictions=np.stack([outputs[g][0][s, m] for g, m, s in where]),
        diverged=np.asarray([outputs[g][1][m] for g, m, _ in where]),
        final_loss=np.asarray([outputs[g][2][m] for g, m, _ in where]),
        params=[take(outputs[g][3], m) for g, m, _ in where] if keep_params else None,
    )


def predict(point: GridPoint, params: PyTree, features: np.ndarray) -> np.ndarray:
    """A trained run's predictions (standardised target units) for rows of features."""
    module = MLPRegressor(point.hidden)
    return np.asarray(_apply(module, params, jnp.asarray(features, jnp.float32),
                             jnp.asarray(point.activation == "tanh")))


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: MLPRegressor, params: PyTree, x: jax.Array, use_tanh: jax.Array) -> jax.Array:
    return module.apply({"params": params}, x, use_tanh)


def ensemble(point: GridPoint, params: Sequence[PyTree]) -> Callable[[jax.Array], jax.Array]:
    """The mean prediction of several trained runs of one point for one row of features
    (standardised target units): a pure function, for `jax.vmap` or integrated gradients."""
    module = MLPRegressor(point.hidden)
    use_tanh = jnp.asarray(point.activation == "tanh")
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)

    def mean_prediction(x: jax.Array) -> jax.Array:
        return jax.vmap(lambda p: module.apply({"params": p}, x, use_tanh))(stacked).mean()

    return mean_prediction
