"""Selection on inner held-out contexts: the device score, the folds and the joint choice."""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perturbjax.data import SYNTHETIC_SPEC
from perturbjax.data.splits import hold_out, is_control
from perturbjax.metrics.response import ResponseTruth, response_scores
from perturbjax.models import FitSettings, ModelFamily, mtae
from perturbjax.models.fitting import ConditionEncoding, TrainingPool, batch_of
from perturbjax.models.inner_selection import (
    choose_inner_contexts,
    inner_folds,
    response_loss,
)
from perturbjax.train import TrainConfig
from perturbjax.train.objective import ROW_WEIGHT

TINY_MODEL = mtae.MTAeConfig(hidden=(16,), latent=4)
TINY_TRAIN = TrainConfig(epochs=4, batch_size=16, learning_rates=(1e-3, 3e-4), patience=None,
                         inner_contexts=2)


@pytest.fixture(scope="module")
def pool(tiny_adata):
    """The training pool of the first context held out: two training contexts remain."""
    held = sorted(tiny_adata.obs[SYNTHETIC_SPEC.context_key].astype(str).unique())[0]
    encoding = ConditionEncoding.from_adata(tiny_adata, SYNTHETIC_SPEC)
    return TrainingPool(hold_out(tiny_adata, SYNTHETIC_SPEC, held).train, SYNTHETIC_SPEC,
                        encoding)


def _fold_batch(folds, validation, fold: int) -> dict:
    """What the loop hands the objective for a fold: its padded rows and its arrays."""
    rows = np.asarray(folds.validation_rows[fold])
    n = int(folds.counts()[1][fold])
    batch = {k: v[rows] for k, v in validation.items()}
    batch[ROW_WEIGHT] = jnp.asarray(np.arange(len(rows)) < n, jnp.float32)
    return batch | {k: jnp.asarray(v[fold]) for k, v in folds.arrays.items()}


def test_the_device_score_is_one_minus_the_host_pearson_delta_top100(pool):
    cells, spec = pool.cells, pool.spec
    contexts = choose_inner_contexts(cells, spec, 2)
    folds, validation = inner_folds(cells, spec, pool.encoding, np.arange(cells.n_obs),
                                    contexts)
    context = cells.obs[spec.context_key].astype(str).to_numpy()
    for f, name in enumerate(contexts):
        batch = _fold_batch(folds, validation, f)
        # A prediction unlike the truth: each control cell plus noise on a shifted mean.
        noise = jax.random.normal(jax.random.PRNGKey(f), batch["x"].shape)
        prediction = batch["x"] + 0.3 + 0.5 * noise
        n = int(folds.counts()[1][f])
        control = np.asarray(cells.X)[(context == name) & is_control(cells, spec)]
        truth = ResponseTruth.build(control,
                                    np.asarray(cells.X)[(context == name)
                                                        & ~is_control(cells, spec)],
                                    cells.var_names)
        host = response_scores(truth, np.asarray(prediction)[:n])["pearson_delta_top100"]
        np.testing.assert_allclose(float(response_loss(prediction, batch)), 1.0 - host,
                                   rtol=1e-4, atol=1e-5)


def test_an_inner_fold_never_trains_on_its_contexts_perturbed_cells(pool):
    cells, spec = pool.cells, pool.spec
    contexts = choose_inner_contexts(cells, spec, 2)
    folds, _ = inner_folds(cells, spec, pool.encoding, np.arange(cells.n_obs), contexts)
    context = cells.obs[spec.context_key].astype(str).to_numpy()
    perturbed = ~is_control(cells, spec)
    for f, name in enumerate(contexts):
        rows = folds.own_rows(f)[0]
        assert not (perturbed[rows] & (context[rows] == name)).any()
        assert set(rows) == set(np.flatnonzero(~(perturbed & (context == name))))


def test_inner_folds_keep_per_seed_the_epoch_and_rate_best_on_average_and_predict_its_mean(
        pool):
    family = ModelFamily("tiny", {"default": (TINY_MODEL, TINY_TRAIN)}, mtae.build,
                         pairing="ot")
    fitted = family.fit(pool, (1, 2), FitSettings())
    result = fitted.parts[None].result
    n_folds, n_seeds, n_rates = 2, 2, 2
    assert result.select_together and result.n_folds == n_folds
    # The loss each member records is its own fold's; the choice reads their mean.
    mean_val = result.val_loss.reshape(n_folds, n_seeds, n_rates, -1).mean(axis=0)
    for s in range(n_seeds):
        rate = int(np.argmin(mean_val[s].min(axis=1)))
        assert result.learning_rate[s] == pytest.approx(TINY_TRAIN.learning_rates[rate])
        best = int(np.argmin(mean_val[s, rate]))
        assert (result.best_epoch.reshape(n_folds, n_seeds)[:, s] == best).all()
        assert fitted.runs("stimulated")[s]["best_epoch"] == best + 1
    # Each seed predicts the mean of its folds' members.
    control = pool.cells[is_control(pool.cells, pool.spec)][:30]
    predicted = fitted.predict(control, "stimulated")
    objective = fitted.parts[None].objective
    batch = batch_of(control, np.full(control.n_obs, pool.encoding.code("stimulated")))
    members = jax.vmap(objective.predict, in_axes=(0, 0, None))(result.params,
                                                                result.model_state, batch)
    members = np.asarray(members).reshape(n_folds, n_seeds, control.n_obs, -1)
    for s in range(n_seeds):
        np.testing.assert_allclose(predicted[s], members[:, s].mean(axis=0), rtol=1e-5,
                                   atol=1e-6)


def test_a_pool_with_one_perturbed_context_selects_on_reconstruction_and_says_so(pool, caplog):
    context = pool.cells.obs[pool.spec.context_key].astype(str)
    first = sorted(set(context))[0]
    alone = TrainingPool(pool.cells[~((context != first).to_numpy()
                                      & ~is_control(pool.cells, pool.spec))].copy(),
                         pool.spec, pool.encoding)
    assert choose_inner_contexts(alone.cells, alone.spec, 2) == []
    plain = dataclasses.replace(TINY_TRAIN, inner_contexts=0)
    family = ModelFamily("tiny", {"default": (TINY_MODEL, TINY_TRAIN),
                                  "reconstruction": (TINY_MODEL, plain)}, mtae.build)
    with caplog.at_level(logging.WARNING, logger="perturbjax"):
        fallback = family.fit(alone, (1,), FitSettings())
    assert "chosen on the validation reconstruction" in caplog.text
    assert not fallback.parts[None].result.select_together
    reference = family.fit(alone, (1,), FitSettings(configuration="reconstruction"))
    control = alone.cells[is_control(alone.cells, alone.spec)][:10]
    np.testing.assert_allclose(fallback.predict(control, "stimulated"),
                               reference.predict(control, "stimulated"), rtol=1e-6)


def test_response_decoding_adds_the_decoded_response_to_each_real_control_cell(pool):
    config = dataclasses.replace(TINY_MODEL, decode_response=True)
    objective = mtae.build(config, pool.task())
    batch = batch_of(pool.cells[:20], pool.encoding.codes(pool.cells[:20], pool.spec))
    params, model_state = objective.init(jax.random.PRNGKey(0), batch)
    x = batch["x"]
    codes = {name: jnp.full(len(x), pool.encoding.code(name), jnp.int32)
             for name in ("control", "stimulated")}

    def decoded(name: str) -> jax.Array:
        z = objective.apply_eval(params, model_state, x, objective.condition(
            {"condition": codes[name]})).latent
        return objective.apply_eval(params, model_state, z,
                                    objective.condition({"condition": codes[name]}),
                                    method="decode")

    stimulated = objective.predict(params, model_state, {"x": x, "condition": codes["stimulated"]})
    np.testing.assert_allclose(stimulated, x + decoded("stimulated") - decoded("control"),
                               rtol=1e-5, atol=1e-5)
    unchanged = objective.predict(params, model_state, {"x": x, "condition": codes["control"]})
    np.testing.assert_allclose(unchanged, x, atol=1e-6)
