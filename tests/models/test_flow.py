"""MTFlow, the flow-matching member: its compact space, what it learns, and how it reads a
context from that context's own control cells."""

from __future__ import annotations

import dataclasses

import anndata as ad
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import perturbjax
from perturbjax.data import SYNTHETIC_SPEC
from perturbjax.data.splits import hold_out, hold_out_mask, is_control
from perturbjax.models import FitSettings, ModelFamily, flow, register_model, unregister_model
from perturbjax.models.compact_space import CompactSpace
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.inner_selection import choose_inner_contexts
from perturbjax.train import TrainConfig

TINY_FLOW = flow.FlowConfig(components=6, hidden=(32, 32), embedding=8, time_frequencies=2,
                            output="displaced",
                            path_noise=0.0, ode_steps=4)
TINY_TRAIN = TrainConfig(epochs=60, batch_size=32, learning_rates=(3e-3,), patience=None,
                         inner_contexts=2)


def _family(model: flow.FlowConfig = TINY_FLOW, train: TrainConfig = TINY_TRAIN
            ) -> ModelFamily:
    return ModelFamily("mtflow_test", {"default": (model, train)}, flow.build, "ot",
                       flow.predict_flow, self_pairs=False, adjust=flow.adjust,
                       space_components=flow.space_components)


def _shifted_contexts(shift: np.ndarray, n_contexts: int = 4, cells: int = 80,
                      seed: int = 0) -> ad.AnnData:
    """Contexts with their own low-rank states; each perturbed cell is a fresh cell of its
    context plus `shift`: the true response of every context, seen or not, is `shift`."""
    rng = np.random.default_rng(seed)
    genes = len(shift)
    basis = rng.normal(size=(3, genes))
    parts, obs = [], []
    for c in range(n_contexts):
        centre = rng.normal(size=3) * 2.0
        for condition in ("control", "stimulated"):
            x = (centre + rng.normal(size=(cells, 3)) * 0.5) @ basis + 3.0
            x += rng.normal(size=x.shape) * 0.1
            parts.append(x + (shift if condition == "stimulated" else 0.0))
            obs += [(f"type_{c}", condition)] * cells
    frame = pd.DataFrame(obs, columns=["cell_type", "condition"])
    frame.index = frame.index.astype(str)
    return ad.AnnData(np.concatenate(parts).astype(np.float32), obs=frame)


def test_the_compact_space_keeps_cells_in_its_span_and_compares_by_content():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 20)) + 1.0
    space = CompactSpace.fit(x, components=4)
    np.testing.assert_allclose(space.decode(space.encode(jnp.asarray(x))), x, atol=1e-4)
    assert space == CompactSpace.fit(x.copy(), components=4)
    assert hash(space) == hash(CompactSpace.fit(x.copy(), components=4))
    assert space != CompactSpace.fit(x[:40], components=4)
    assert CompactSpace.fit(x, components=100).components == 20  # at most the genes


def test_the_space_is_fitted_without_the_perturbed_cells_of_the_inner_contexts(tiny_adata):
    spec = SYNTHETIC_SPEC
    pool = TrainingPool(hold_out(tiny_adata, spec, "type_0").train, spec,
                        ConditionEncoding.from_adata(tiny_adata, spec))
    family = _family()
    task = family._task(pool, TINY_FLOW, TINY_TRAIN, inner=True)
    scored = hold_out_mask(pool.cells, spec, choose_inner_contexts(pool.cells, spec, 2))
    assert scored.sum() > 0
    assert task.space == CompactSpace.of_cells(pool.cells[~scored], TINY_FLOW.components)
    assert task.space != CompactSpace.of_cells(pool.cells, TINY_FLOW.components)


def test_a_flow_learns_a_shared_shift_for_a_context_it_never_saw_perturbed():
    shift = np.zeros(12, np.float32)
    shift[:4] = [1.5, -1.0, 0.8, 2.0]
    adata = _shifted_contexts(shift)
    spec = SYNTHETIC_SPEC
    split = hold_out(adata, spec, "type_0")
    pool = TrainingPool(split.train, spec, ConditionEncoding.from_adata(adata, spec))
    fitted = _family().fit(pool, seeds=(1,), settings=FitSettings())
    [prediction] = fitted.predict(split.control, "stimulated")
    response = prediction.mean(axis=0) - np.asarray(split.control.X).mean(axis=0)
    # The shift lies outside the contexts' control span: the space has it from the one
    # training context that is not an inner context (the inner ones' perturbed cells are
    # never in it), and only the flow can have moved the cells along it.
    assert np.corrcoef(response, shift)[0, 1] > 0.95
    assert np.abs(response - shift).max() < 0.35 * np.abs(shift).max()


@pytest.fixture(scope="module")
def model(tiny_adata):
    """The tiny member registered for the API, as a user's own model would be, and fitted
    through it."""
    family = register_model(_family(train=dataclasses.replace(TINY_TRAIN, epochs=2)))
    yield perturbjax.fit(tiny_adata, model=family.name, held_out="type_0", seeds=(1, 2),
                         calibrate=False)
    unregister_model(family.name)


def test_each_context_flows_from_its_own_control_cells(tiny_adata, model):
    control = tiny_adata[is_control(tiny_adata, SYNTHETIC_SPEC)].copy()
    context = control.obs["cell_type"].astype(str).to_numpy()
    together = model.predict(control, "stimulated").X
    for name in ("type_0", "type_1"):
        alone = model.predict(control[context == name].copy(), "stimulated").X
        np.testing.assert_allclose(together[context == name], alone, rtol=1e-5, atol=1e-5)
    # The summary matters: type_0's cells described as one context with type_1's move
    # otherwise.
    mixed = control[np.isin(context, ["type_0", "type_1"])].copy()
    mixed.obs["cell_type"] = "one"
    pooled = model.predict(mixed, "stimulated").X
    first = context[np.isin(context, ["type_0", "type_1"])] == "type_0"
    assert not np.allclose(pooled[first], together[context == "type_0"], atol=1e-4)


def test_a_saved_flow_fits_its_space_again_and_predicts_bitwise_the_same(tiny_adata, tmp_path,
                                                                         model):
    control = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()
                         & is_control(tiny_adata, SYNTHETIC_SPEC)].copy()
    model.save(tmp_path / "model")
    loaded = perturbjax.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(control, "stimulated").X,
                                  model.predict(control, "stimulated").X)


def test_decoded_cells_lie_in_the_space_displaced_ones_keep_theirs_anchored_their_means(tiny_adata,
                                                                               model):
    control = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()
                         & is_control(tiny_adata, SYNTHETIC_SPEC)].copy()
    program = model.trained.parts[None]
    space = program.objective.space
    residual = lambda v: v - np.asarray(space.decode(space.encode(v)))  # noqa: E731
    x = np.asarray(control.X)
    displaced = model.trained.predict(control, "stimulated")[0]
    np.testing.assert_allclose(residual(displaced), residual(x), atol=1e-3)
    assert np.abs(residual(x)).max() > 0.1  # the residual is there to be kept
    objective = dataclasses.replace(program.objective, module=flow.VectorField(
        dataclasses.replace(program.objective.module.config, output="decoded")))
    decoded = flow.predict_flow(objective, program.result, program.pool, control,
                                "stimulated")[0]
    np.testing.assert_allclose(residual(decoded), 0.0, atol=1e-3)
    np.testing.assert_allclose(decoded - displaced, residual(decoded) - residual(x),
                               atol=1e-3)
    objective = dataclasses.replace(objective, module=flow.VectorField(
        dataclasses.replace(objective.module.config, output="anchored")))
    anchored = flow.predict_flow(objective, program.result, program.pool, control,
                                 "stimulated")[0]
    # the same cells, moved by the part of their context's mean that the space leaves out
    np.testing.assert_allclose(anchored - decoded, np.broadcast_to(
        residual(x.mean(axis=0, keepdims=True)), decoded.shape), atol=1e-3)


def test_cells_are_embedded_in_the_space_the_flow_lives_in(tiny_adata, model):
    cells = tiny_adata[:50].copy()
    embedded = model.embed(cells)
    space = model.trained.parts[None].objective.space
    np.testing.assert_allclose(embedded.obsm[f"X_{model.name}"],
                               space.encode(jnp.asarray(cells.X)), rtol=1e-5, atol=1e-5)
    assert embedded.n_obs == cells.n_obs and "X_" + model.name not in cells.obsm
