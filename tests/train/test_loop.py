import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perturbjax.data import SYNTHETIC_SPEC
from perturbjax.models import mtae
from perturbjax.models.fitting import ConditionEncoding, Task, batch_of
from perturbjax.train import (
    CheckpointMismatchError,
    Folds,
    Objective,
    TrainConfig,
    fit,
    make_optimizer,
    predict_members,
)
from perturbjax.train.loop import trainer_for
from perturbjax.train.objective import row_mean

TINY_MODEL = mtae.MTAeConfig(hidden=(16,), latent=8, dropout=0.1, input_dropout=0.1)
CONFIG = TrainConfig(epochs=6, batch_size=16, learning_rates=(3e-3,), warmup_steps=5,
                     patience=None, select_best=False)


@pytest.fixture(scope="module")
def batches(tiny_adata):
    encoding = ConditionEncoding.from_adata(tiny_adata, SYNTHETIC_SPEC)
    codes = encoding.codes(tiny_adata, SYNTHETIC_SPEC)
    val = np.arange(tiny_adata.n_obs) % 5 == 0
    return (batch_of(tiny_adata[~val], codes[~val]), batch_of(tiny_adata[val], codes[val]),
            mtae.build(TINY_MODEL, Task.of(tiny_adata.n_vars, encoding.labels, encoding.control)))


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def _assert_trees_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_same_seed_gives_bitwise_identical_parameters(batches):
    train, val, objective = batches
    first = fit(objective, train, val, [1, 2], CONFIG)
    again = fit(objective, train, val, [1, 2], CONFIG)
    _assert_trees_equal(first.params, again.params)
    np.testing.assert_array_equal(first.val_loss, again.val_loss)


def test_different_seeds_give_different_parameters(batches):
    train, val, objective = batches
    result = fit(objective, train, val, [1, 2], CONFIG)
    kernels = [a for a in _leaves(result.params) if a.ndim == 3]
    assert not np.allclose(kernels[0][0], kernels[0][1])


def test_vmapped_seeds_match_seeds_trained_one_by_one(batches):
    # Parameters are compared through what they compute: biases that BatchNorm cancels have
    # an exact gradient of zero, so Adam turns rounding noise in them into steps of any sign,
    # which changes the parameters but not the function.
    train, val, objective = batches
    together = fit(objective, train, val, [1, 2], CONFIG)
    joint = predict_members(objective, together, val)
    for i, seed in enumerate((1, 2)):
        alone = fit(objective, train, val, [seed], CONFIG)
        np.testing.assert_allclose(together.val_loss[i], alone.val_loss[0], rtol=5e-3)
        np.testing.assert_allclose(joint[i], predict_members(objective, alone, val)[0],
                                   rtol=2e-2, atol=2e-2)


def test_training_lowers_the_validation_loss(batches):
    train, val, objective = batches
    result = fit(objective, train, val, [1], dataclasses.replace(CONFIG, epochs=30))
    assert result.val_loss[0, -1] < 0.8 * result.val_loss[0, 0]


def test_best_epoch_is_the_lowest_validation_loss_and_early_stopping_halts(batches):
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, epochs=200, patience=3, select_best=True,
                                 learning_rates=(3e-2,))
    result = fit(objective, train, val, [1, 2], config)
    assert result.epochs_run < 200
    for member, best in enumerate(result.best_epoch):
        window = result.val_loss[member, : best + 3 + 1]  # epochs while it still waited
        assert best == np.argmin(window)
    # It stopped at the first epoch at which every member had waited `patience` epochs.
    assert (result.epochs_run - 1 - result.best_epoch).min() == 3


def test_learning_rate_is_chosen_on_the_validation_loss(batches):
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, epochs=10, learning_rates=(1e-9, 3e-3),
                                 select_best=True)
    result = fit(objective, train, val, [1, 2], config)
    np.testing.assert_allclose(result.learning_rate, [3e-3, 3e-3], rtol=1e-6)
    assert result.train_loss.shape == (4, 10)


def test_warmup_starts_from_zero_and_reaches_the_learning_rate():
    params = {"w": jnp.ones(3)}
    tx = make_optimizer(0.1, TrainConfig(warmup_steps=4))
    state = tx.init(params)
    sizes = []
    for _ in range(6):
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        sizes.append(float(jnp.abs(updates["w"][0])))
    np.testing.assert_allclose(sizes, [0.0, 0.025, 0.05, 0.075, 0.1, 0.1], rtol=1e-3)


def test_killed_run_resumes_to_the_same_final_parameters(batches, tmp_path):
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, checkpoint_every=2)
    uninterrupted = fit(objective, train, val, [1, 2], config, workdir=tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_at_epoch_4(epoch, state):
        if epoch == 4:
            raise Killed

    with pytest.raises(Killed):
        fit(objective, train, val, [1, 2], config, workdir=tmp_path / "cut",
            on_epoch=kill_at_epoch_4)
    resumed_from = []
    resumed = fit(objective, train, val, [1, 2], config, workdir=tmp_path / "cut",
                  on_epoch=lambda e, s: resumed_from.append(e))
    assert resumed_from[0] == 4  # epochs 0-3 came from the checkpoint after epoch 4
    _assert_trees_equal(uninterrupted.params, resumed.params)
    np.testing.assert_array_equal(uninterrupted.train_loss, resumed.train_loss)


def test_resuming_an_early_stopped_run_stops_at_the_same_epoch(batches, tmp_path):
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, epochs=200, patience=2, select_best=False,
                                 learning_rates=(3e-2,), checkpoint_every=1)
    whole = fit(objective, train, val, [1], config, workdir=tmp_path)
    assert whole.epochs_run < 200
    again = fit(objective, train, val, [1], config, workdir=tmp_path)  # from its last checkpoint
    assert again.epochs_run == whole.epochs_run
    _assert_trees_equal(whole.params, again.params)


def test_invalid_train_config_is_refused_with_every_problem_named():
    with pytest.raises(ValueError, match="patience.*validation_fraction"):
        TrainConfig(patience=0, validation_fraction=1.5)


def test_resume_with_another_configuration_is_refused(batches, tmp_path):
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, checkpoint_every=2)
    fit(objective, train, val, [1], config, workdir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="different run"):
        fit(objective, train, val, [1], dataclasses.replace(config, batch_size=8),
            workdir=tmp_path)


def test_resume_with_other_epochs_is_refused_by_fingerprint_not_by_a_failed_restore(
        batches, tmp_path):
    # The saved state's loss history has the old epoch count as its shape.
    train, val, objective = batches
    config = dataclasses.replace(CONFIG, checkpoint_every=2)
    fit(objective, train, val, [1], config, workdir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="different run"):
        fit(objective, train, val, [1], dataclasses.replace(config, epochs=4), workdir=tmp_path)


def test_non_finite_loss_stops_training_with_a_clear_error(batches):
    train, val, objective = batches

    @dataclasses.dataclass(frozen=True)
    class Exploding(type(objective)):
        def loss(self, params, model_state, batch, key):
            loss, model_state = super().loss(params, model_state, batch, key)
            return loss * jnp.nan, model_state

    broken = Exploding(**{f.name: getattr(objective, f.name)
                          for f in dataclasses.fields(objective)})
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 1"):
        fit(broken, train, val, [1], CONFIG)


def test_batch_larger_than_the_data_is_refused(batches):
    train, val, objective = batches
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(objective, train, val, [1], dataclasses.replace(CONFIG, batch_size=10_000))


def test_seed_axis_shards_over_two_devices_with_the_same_result(tmp_path):
    script = textwrap.dedent("""
        import jax, numpy as np
        from perturbjax.data import SYNTHETIC_SPEC, make_perturbation_data
        from perturbjax.models import mtae
        from perturbjax.models.fitting import ConditionEncoding, Task, batch_of
        from tests.conftest import TINY
        from tests.train.test_loop import CONFIG, TINY_MODEL
        from perturbjax.train import fit
        assert jax.device_count() == 2
        adata = make_perturbation_data(TINY)
        enc = ConditionEncoding.from_adata(adata, SYNTHETIC_SPEC)
        codes = enc.codes(adata, SYNTHETIC_SPEC)
        objective = mtae.build(TINY_MODEL, Task.of(adata.n_vars, enc.labels, enc.control))
        data = batch_of(adata, codes)
        both = fit(objective, data, data, [1, 2], CONFIG)
        one = fit(objective, data, data, [2], CONFIG)
        assert both.devices == 2 and one.devices == 1, (both.devices, one.devices)
        np.testing.assert_allclose(both.val_loss[1], one.val_loss[0], rtol=5e-3)
        print("sharded ok")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        return nn.Dense(1)(x)


@dataclasses.dataclass(frozen=True)
class _BatchMean(Objective):
    """A loss that reports which cells a step saw: the mean of its batch (no learning)."""

    def inputs(self, batch):
        return (batch["x"],)

    def loss(self, params, model_state, batch, key):
        return jnp.mean(batch["x"]) + 0.0 * jnp.sum(params["Dense_0"]["kernel"]), model_state

    def validation_loss(self, params, model_state, batch):
        return jnp.float32(0.0)


@pytest.mark.parametrize("shared", [False, True])
def test_shared_batch_order_gives_every_seed_the_same_batches(shared):
    x = jnp.arange(50.0)[:, None] ** 2  # 50 cells, batch 8: two cells are dropped per epoch
    objective = _BatchMean(_Linear())
    config = TrainConfig(epochs=3, batch_size=8, patience=None, shared_batch_order=shared)
    result = fit(objective, {"x": x}, {"x": x}, [1, 2, 3], config)
    same = np.allclose(result.train_loss[0], result.train_loss[1:])
    assert same == shared


@pytest.mark.slow  # 19 s; the ragged-folds test below proves the same, exactly, by default
def test_a_fold_member_trains_as_the_same_seed_alone_on_the_folds_rows(batches):
    train, val, objective = batches
    n_train, n_val = len(train["x"]), len(val["x"])
    rng = np.random.default_rng(0)
    train_rows = np.stack([rng.permutation(n_train)[: n_train * 3 // 4] for _ in range(2)])
    val_rows = np.stack([rng.permutation(n_val)[: n_val // 2] for _ in range(2)])
    folds = Folds(train_rows, val_rows)
    together = fit(objective, train, val, [1, 2], CONFIG, folds=folds)
    assert together.n_folds == 2 and together.train_loss.shape[0] == 4
    joint = predict_members(objective, together, val)
    for fold in range(2):
        rows = lambda table, r: {k: v[r] for k, v in table.items()}  # noqa: E731
        alone = fit(objective, rows(train, train_rows[fold]), rows(val, val_rows[fold]), [2],
                    CONFIG)
        member = 2 * fold + 1  # fold-major, then seed
        np.testing.assert_allclose(together.val_loss[member], alone.val_loss[0], rtol=5e-3)
        np.testing.assert_allclose(joint[member], predict_members(objective, alone, val)[0],
                                   rtol=2e-2, atol=2e-2)


def test_folds_of_different_sizes_train_each_as_it_would_alone():
    # A model without dropout or BatchNorm, so rounding is not amplified: each fold must take
    # its own permutation and number of steps, be validated on its own rows and stop early on
    # its own, the other fold running on.
    pool = np.linspace(-1, 1, 96, dtype=np.float32)
    table = {"row": np.arange(96), "y": np.where(np.arange(96) < 48, 3.0, 2.0) * pool}
    config = TrainConfig(epochs=40, batch_size=8, learning_rates=(0.05, 0.2), patience=3)
    train_rows, val_rows = [np.arange(0, 40), np.arange(30, 96)], [np.arange(40, 52),
                                                                   np.arange(0, 30)]
    objective = _PooledLinear(_Linear())
    together = fit(objective, table, table, [0, 1], config, shared={"pool": pool},
                   folds=Folds.ragged(train_rows, val_rows))
    epochs = []
    for fold in range(2):
        rows = lambda r: {k: v[r] for k, v in table.items()}  # noqa: E731
        alone = fit(objective, rows(train_rows[fold]), rows(val_rows[fold]), [0, 1], config,
                    shared={"pool": pool})
        member = together.fold(fold)
        epochs.append(alone.epochs_run)
        assert member.epochs_run == alone.epochs_run
        np.testing.assert_array_equal(member.best_epoch, alone.best_epoch)
        np.testing.assert_array_equal(member.learning_rate, alone.learning_rate)
        np.testing.assert_allclose(member.val_loss, alone.val_loss, rtol=1e-5)
        np.testing.assert_allclose(member.train_loss, alone.train_loss, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(_leaves(member.params), _leaves(alone.params), rtol=1e-5)
    assert epochs[0] != epochs[1] and max(epochs) < config.epochs, epochs


def test_ragged_folds_refuse_counts_outside_their_rows():
    with pytest.raises(ValueError, match="train_counts must give each of the 2 folds"):
        Folds(np.zeros((2, 3), int), np.zeros((2, 1), int), train_counts=np.array([3, 4]))


@dataclasses.dataclass(frozen=True)
class _PooledLinear(Objective):
    """y = w * pool[row] * scale: rows index a shared pool, `scale` is a per-fold constant."""

    weighs_validation_rows: ClassVar[bool] = True

    def inputs(self, batch):
        return (batch["pool"][batch["row"]],)

    def loss(self, params, model_state, batch, key):
        pred = self.module.apply({"params": params}, *self.inputs(batch), train=True)
        target = batch["y"] * batch.get("scale", 1.0)
        return jnp.mean((pred[:, 0] - target) ** 2), model_state

    def validation_loss(self, params, model_state, batch):
        pred = self.apply_eval(params, model_state, *self.inputs(batch))
        return row_mean((pred[:, 0] - batch["y"] * batch.get("scale", 1.0)) ** 2, batch)

    def predict(self, params, model_state, batch):
        return self.apply_eval(params, model_state, *self.inputs(batch))


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(1, use_bias=False)(x[:, None])


def test_shared_arrays_and_fold_constants_reach_the_objective():
    pool = np.linspace(-1, 1, 64, dtype=np.float32)
    table = {"row": np.arange(64), "y": 3.0 * pool}
    folds = Folds(np.stack([np.arange(0, 48), np.arange(16, 64)]),
                  np.stack([np.arange(48, 64), np.arange(0, 16)]),
                  arrays={"scale": np.array([1.0, -2.0], np.float32)})
    config = TrainConfig(epochs=150, batch_size=16, learning_rates=(0.05,), patience=None,
                         select_best=False)
    result = fit(_PooledLinear(_Linear()), table, table, [0], config, shared={"pool": pool},
                 folds=folds)
    slopes = np.asarray(result.params["Dense_0"]["kernel"]).ravel()
    np.testing.assert_allclose(slopes, [3.0, -6.0], rtol=1e-2)


def test_folds_refuse_rows_outside_the_table_and_clashing_names(batches):
    train, val, objective = batches
    too_far = Folds(np.array([[0, len(train["x"])]]), np.array([[0]]))
    with pytest.raises(ValueError, match="train_rows must index rows"):
        fit(objective, train, val, [0], CONFIG, folds=too_far)
    with pytest.raises(ValueError, match=r"repeat \['x'\]"):
        fit(objective, train, val, [0], CONFIG, shared={"x": train["x"]})
    with pytest.raises(ValueError, match="leading axis of 2 folds"):
        Folds(np.zeros((2, 3), int), np.zeros((2, 1), int), arrays={"w": np.ones(3)})


def test_a_learning_rate_multiplier_scales_only_the_named_parameters():
    params = {"selector": {"logits": jnp.zeros(3)}, "dense": {"kernel": jnp.zeros(3)}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    config = dataclasses.replace(CONFIG, warmup_steps=0)
    plain = make_optimizer(0.1, config)
    faster = make_optimizer(0.1, dataclasses.replace(
        config, learning_rate_multipliers=(("logits", 10.0),)))
    step = plain.update(grads, plain.init(params), params)[0]
    assert np.all(np.asarray(step["dense"]["kernel"]) != 0)
    fast_step = faster.update(grads, faster.init(params), params)[0]
    np.testing.assert_allclose(fast_step["selector"]["logits"], 10 * step["selector"]["logits"])
    np.testing.assert_allclose(fast_step["dense"]["kernel"], step["dense"]["kernel"])


def test_refitting_the_same_objective_and_configuration_reuses_its_compiled_trainer(batches):
    _, _, objective = batches
    assert trainer_for(objective, CONFIG) is trainer_for(objective, CONFIG)
    assert trainer_for(objective, CONFIG) is not trainer_for(
        objective, dataclasses.replace(CONFIG, epochs=CONFIG.epochs + 1))

    @dataclasses.dataclass(frozen=True)
    class WithArray(type(objective)):
        weights: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(3))

    unhashable = WithArray(**{f.name: getattr(objective, f.name)
                              for f in dataclasses.fields(objective)})
    first, second = trainer_for(unhashable, CONFIG), trainer_for(unhashable, CONFIG)
    assert first is not second and first.objective is unhashable
