"""The public API end to end: fit, predict AnnData, save, load, predict again, and the errors
that name what is expected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import perturbjax
from perturbjax.errors import PerturbjaxError


@pytest.fixture(scope="module")
def fitted(tiny_adata):
    return perturbjax.fit(tiny_adata, model="mtae", held_out="type_0", seeds=(1, 2), epochs=2)


@pytest.fixture(scope="module")
def control(tiny_adata):
    cells = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()
                       & (tiny_adata.obs["condition"] == "control").to_numpy()]
    return cells.copy()


def test_a_prediction_is_an_anndata_with_every_seed_and_the_spread(fitted, control):
    pred = fitted.predict(control, condition="stimulated")
    assert pred.shape == control.shape and list(pred.obs_names) == list(control.obs_names)
    members = np.stack([pred.layers["member_1"], pred.layers["member_2"]])
    np.testing.assert_allclose(pred.X, members.mean(0), rtol=1e-6)
    np.testing.assert_allclose(pred.layers["std"], members.std(0), rtol=1e-6)
    assert (pred.obs["condition"] == "stimulated").all() and pred.obs["perturbjax_prediction"].all()
    assert pred.uns["perturbjax"]["seeds"] == [1, 2]
    sc.pp.pca(pred, n_comps=5)  # scanpy reads it as any AnnData


def test_a_loaded_model_predicts_bitwise_what_the_saved_one_did(fitted, control, tmp_path):
    fitted.save(tmp_path / "model")
    again = perturbjax.load(tmp_path / "model")
    first = fitted.predict(control, "stimulated")
    second = again.predict(control, "stimulated")
    for layer in ("member_1", "member_2"):
        np.testing.assert_array_equal(first.layers[layer], second.layers[layer])
    pd.testing.assert_frame_equal(first.var, second.var)  # the intervals too
    with pytest.raises(PerturbjaxError, match="holds a saved model already"):
        fitted.save(tmp_path / "model")


def test_the_interval_is_conformal_on_fits_that_did_not_see_each_context(fitted, control,
                                                                          tiny_adata):
    residuals = fitted.calibration["stimulated"]
    assert list(residuals.index) == ["type_1", "type_2"]  # the training contexts
    # type_1's residual is that of the same model fitted without type_1's perturbed cells
    without = perturbjax.fit(tiny_adata, model="mtae", held_out=["type_0", "type_1"],
                             seeds=(1, 2), epochs=2, calibrate=False)
    cells = tiny_adata[(tiny_adata.obs["cell_type"] == "type_1").to_numpy()]
    stimulated = (cells.obs["condition"] == "stimulated").to_numpy()
    predicted = without.predict(cells[~stimulated].copy(), "stimulated")
    real = np.asarray(cells.X[stimulated]).mean(axis=0)
    np.testing.assert_allclose(residuals.loc["type_1"],
                               np.abs(real - predicted.X.mean(axis=0)), rtol=1e-5, atol=1e-6)
    # two calibration contexts: at 60% the half-width is the larger residual (rank 2 of 2) ...
    pred = fitted.predict(control, "stimulated", level=0.6)
    np.testing.assert_allclose(pred.var["response_upper_60"] - pred.var["predicted_response"],
                               residuals.max(axis=0).to_numpy())
    np.testing.assert_allclose(pred.var["predicted_response"],
                               pred.X.mean(axis=0) - np.asarray(control.X).mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert pred.uns["perturbjax"]["interval"]["finite"]
    # ... and at 90% no finite interval has the guarantee: it is infinite and says why
    wide = fitted.predict(control, "stimulated")
    assert np.isinf(wide.var["response_upper_90"]).all()
    assert "needs 9" in wide.uns["perturbjax"]["interval"]["note"]
    assert "response_seed_sd_uncalibrated" in wide.var


def test_genes_in_another_order_are_reindexed_by_name_on_request(fitted, control):
    shuffled = control[:, np.random.default_rng(0).permutation(control.n_vars)].copy()
    with pytest.raises(PerturbjaxError, match="pass reindex=True"):
        fitted.predict(shuffled, "stimulated")
    np.testing.assert_array_equal(fitted.predict(shuffled, "stimulated", reindex=True).X,
                                  fitted.predict(control, "stimulated").X)


def test_missing_genes_unknown_conditions_and_raw_counts_are_refused_by_name(fitted, control):
    with pytest.raises(PerturbjaxError, match=r"1 missing \['gene_0'\]"):
        fitted.predict(control[:, 1:].copy(), "stimulated", reindex=True)
    with pytest.raises(PerturbjaxError, match=r"known conditions: \['stimulated'\]"):
        fitted.predict(control, "IFN-beta")
    counts = control.copy()
    counts.X = np.round(np.expm1(counts.X))
    with pytest.raises(PerturbjaxError, match="counts values but the model was trained on "
                                              "log-normalised data"):
        fitted.predict(counts, "stimulated")


def test_a_latent_arithmetic_baseline_round_trips_with_its_training_cells(tiny_adata, control,
                                                                          tmp_path):
    scgen = perturbjax.fit(tiny_adata, model="scgen", held_out=["type_0"], seeds=(3,),
                           epochs=1, calibrate=False)
    scgen.save(tmp_path / "scgen")
    again = perturbjax.load(tmp_path / "scgen")
    np.testing.assert_array_equal(again.predict(control, "stimulated").X,
                                  scgen.predict(control, "stimulated").X)
    with pytest.raises(PerturbjaxError, match="'mean_shfit' is not registered"):
        perturbjax.fit(tiny_adata, model="mean_shfit")
