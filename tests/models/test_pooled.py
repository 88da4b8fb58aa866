"""Several pools as folds of one program: each pool trains as it would alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perturbjax.data import SYNTHETIC_SPEC
from perturbjax.data.splits import hold_out
from perturbjax.models import FitSettings, ModelFamily, mtae
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.pooled import PooledCells
from perturbjax.train import TrainConfig

TINY_MODEL = mtae.MTAeConfig(hidden=(16,), latent=4)
TINY_TRAIN = TrainConfig(epochs=2, batch_size=16, patience=None, select_best=False)


@pytest.fixture(scope="module")
def pools(tiny_adata):
    """Two held-out contexts' training pools, of different sizes (the second loses every
    fifth cell), so that their folds are padded."""
    encoding = ConditionEncoding.from_adata(tiny_adata, SYNTHETIC_SPEC)
    contexts = sorted(tiny_adata.obs[SYNTHETIC_SPEC.context_key].astype(str).unique())[:2]
    cells = [hold_out(tiny_adata, SYNTHETIC_SPEC, c).train for c in contexts]
    cells[1] = cells[1][np.arange(cells[1].n_obs) % 5 != 0].copy()
    return {c: TrainingPool(x, SYNTHETIC_SPEC, encoding)
            for c, x in zip(contexts, cells, strict=True)}


@pytest.mark.slow  # 34 s on one core; the study's one-program test stays in the default run
def test_pools_trained_as_one_program_predict_as_each_pool_alone(pools):
    # Each pool's own OT pairs (the plain tables are covered by tests/studies, one_program).
    # Tolerances are those of vmapped members against members alone (tests/train).
    family = ModelFamily("tiny", {"default": (TINY_MODEL, TINY_TRAIN)}, mtae.build,
                         pairing="ot")
    together = family.fit_pools(pools, (1, 2), FitSettings())
    context, pool = list(pools.items())[1]  # the smaller pool: its steps past its own are masked
    alone = family.fit(pool, (1, 2), FitSettings())
    control = pool.cells[:40]
    for joint, single in zip(together[context].predict(control, "stimulated"),
                             alone.predict(control, "stimulated"), strict=True):
        np.testing.assert_allclose(joint, single, rtol=2e-2, atol=2e-2)
    runs = lambda fitted: [{k: r[k] for k in ("seed", "epochs_run", "best_epoch")}  # noqa: E731
                           for r in fitted.runs("stimulated")]
    assert runs(together[context]) == runs(alone)


def test_pooled_cells_hold_each_cell_once_in_each_pools_order(pools):
    cells = [p.cells for p in pools.values()]
    pooled = PooledCells.of(cells, SYNTHETIC_SPEC)
    assert pooled.union.obs_names.is_unique
    assert set(pooled.union.obs_names) == set().union(*(c.obs_names for c in cells))
    for pool, rows in zip(cells, pooled.rows, strict=True):
        np.testing.assert_array_equal(pooled.union.X[rows], pool.X)


def test_pools_on_other_genes_or_without_a_context_are_refused(pools, tiny_adata):
    first = next(iter(pools.values())).cells
    with pytest.raises(ValueError, match="other genes than pool 0"):
        PooledCells.of([first, first[:, :-1]], SYNTHETIC_SPEC)
    context = first.obs[SYNTHETIC_SPEC.context_key].astype(str)
    with pytest.raises(ValueError, match="lacks some of the contexts"):
        PooledCells.of([first, first[(context != context.iloc[0]).to_numpy()]],
                       SYNTHETIC_SPEC)


def test_a_model_whose_objective_reads_the_pool_is_refused(pools):
    # kl_batch scales the KL weight by the pool's cell count: one objective cannot serve all.
    model = dataclasses.replace(TINY_MODEL, variational=True, kl_weight=1e-3, kl_batch=16)
    family = ModelFamily("tiny", {"default": (model, TINY_TRAIN)}, mtae.build)
    with pytest.raises(ValueError, match="different objective per pool"):
        family.fit_pools(pools, (1,), FitSettings())
