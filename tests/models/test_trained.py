"""The public API end to end: fit, predict AnnData, save, load, predict again, and the errors
that name what is expected."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import perturbjax
from perturbjax.errors import PerturbjaxError
from perturbjax.models.model_files import description_hash


@pytest.fixture(scope="module")
def fitted(tiny_adata):
    # Two calibration contexts give a finite interval up to 66.7%.
    return perturbjax.fit(tiny_adata, model="mtae", held_out="type_0", seeds=(1, 2), epochs=2,
                          level=0.6)


@pytest.fixture(scope="module")
def control(tiny_adata):
    cells = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()
                       & (tiny_adata.obs["condition"] == "control").to_numpy()]
    return cells.copy()


def test_a_prediction_is_an_anndata_with_every_seed_and_the_spread(fitted, control):
    pred = fitted.predict(control, condition="stimulated")
    assert pred.shape == control.shape
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


def test_genes_are_matched_by_name_by_default_and_on_request_only_by_position(fitted,
                                                                              control):
    shuffled = control[:, np.random.default_rng(0).permutation(control.n_vars)].copy()
    np.testing.assert_array_equal(fitted.predict(shuffled, "stimulated").X,
                                  fitted.predict(control, "stimulated").X)
    with pytest.raises(PerturbjaxError, match="pass reindex=True"):
        fitted.predict(shuffled, "stimulated", reindex=False)


def test_predicted_cells_are_named_apart_from_their_control_cells(fitted, control):
    pred = fitted.predict(control, "stimulated")
    assert list(pred.obs_names) == [f"{name}|stimulated" for name in control.obs_names]
    joined = ad.concat([control, pred])
    assert joined.obs_names.is_unique


def test_several_conditions_are_predicted_in_one_call_as_they_are_one_by_one(fitted, control):
    both = fitted.predict(control, ["stimulated", "stimulated"])
    one = fitted.predict(control, "stimulated")
    assert both.n_obs == 2 * control.n_obs
    np.testing.assert_array_equal(both.X[: control.n_obs], one.X)
    np.testing.assert_array_equal(both.var["predicted_response (stimulated)"],
                                  one.var["predicted_response"])


def test_negative_predictions_are_counted_and_clipped_on_request(fitted, control, caplog):
    pred = fitted.predict(control, "stimulated")
    share = pred.uns["perturbjax"]["negative_share"]
    assert share == pytest.approx(float(np.mean(np.stack(
        [pred.layers[k] for k in pred.layers if k.startswith("member_")]) < 0)))
    clipped = fitted.predict(control, "stimulated", clip_negative=True)
    assert (clipped.X >= 0).all() and all((clipped.layers[k] >= 0).all()
                                          for k in clipped.layers if k != "std")
    if share > 0:
        assert any("clip_negative=True" in r.getMessage() for r in caplog.records)
    for key in (k for k in pred.layers if k.startswith("member_")):
        np.testing.assert_array_equal(clipped.layers[key], np.maximum(pred.layers[key], 0.0))


def test_missing_genes_unknown_conditions_and_raw_counts_are_refused_by_name(fitted, control):
    with pytest.raises(PerturbjaxError, match=r"1 missing \['gene_0'\]"):
        fitted.predict(control[:, 1:].copy(), "stimulated")
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


def _saved(model, folder):
    model.save(folder)
    return folder, json.loads((folder / "perturbjax_model.json").read_text())


def test_a_saved_model_lists_a_hash_of_every_file_and_refuses_a_changed_one(fitted, control,
                                                                          tmp_path):
    folder, description = _saved(fitted, tmp_path / "model")
    assert description["format"] == 2 and description["device"] == fitted.device
    listed = set(description["files"])
    assert listed == {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and p.name != "perturbjax_model.json"}
    target = folder / "part_0" / "training_cells.h5ad"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(PerturbjaxError, match=r"'part_0/training_cells.h5ad' differs"):
        perturbjax.load(folder)
    target.unlink()
    with pytest.raises(PerturbjaxError, match=r"'part_0/training_cells.h5ad' is missing"):
        perturbjax.load(folder)


def test_a_saved_model_reads_nothing_outside_its_folder(fitted, tmp_path):
    folder, description = _saved(fitted, tmp_path / "model")
    outside = tmp_path / "outside.h5ad"
    moved = folder / "part_0" / "training_cells.h5ad"
    outside.write_bytes(moved.read_bytes())
    moved.unlink()
    moved.symlink_to(outside)  # a link out of the folder, even to identical bytes
    with pytest.raises(PerturbjaxError, match="outside the model's folder"):
        perturbjax.load(folder)
    folder, description = _saved(fitted, tmp_path / "second")
    description["parts"][0]["folder"] = "../model/part_0"
    description["description_hash"] = description_hash(description)  # a deliberate edit
    (folder / "perturbjax_model.json").write_text(json.dumps(description))
    with pytest.raises(PerturbjaxError, match="outside the model's folder"):
        perturbjax.load(folder)


def test_a_damaged_description_is_refused_by_name(fitted, tmp_path):
    folder, description = _saved(fitted, tmp_path / "model")
    description["genes"] = description["genes"][::-1]  # a reversed gene list
    (folder / "perturbjax_model.json").write_text(json.dumps(description))
    with pytest.raises(PerturbjaxError, match="description was edited or damaged"):
        perturbjax.load(folder)
    text = (folder / "perturbjax_model.json").read_text()
    (folder / "perturbjax_model.json").write_text(text[: len(text) // 2])
    with pytest.raises(PerturbjaxError, match=r"perturbjax_model.json: not valid JSON"):
        perturbjax.load(folder)
    (folder / "perturbjax_model.json").write_text(json.dumps({"format": 7}))
    with pytest.raises(PerturbjaxError, match=r"format 7.*fit and save the model again"):
        perturbjax.load(folder)


def test_a_model_saved_in_the_first_format_still_loads(fitted, control, tmp_path):
    folder, description = _saved(fitted, tmp_path / "model")
    for key in ("files", "device", "description_hash"):
        description.pop(key)
    description["format"] = 1
    (folder / "perturbjax_model.json").write_text(json.dumps(description))
    for history in folder.glob("part_*/history.npz"):
        history.unlink()
    again = perturbjax.load(folder)
    np.testing.assert_array_equal(again.predict(control, "stimulated").X,
                                  fitted.predict(control, "stimulated").X)
    assert again.history()[None]["val_loss"].size == 0


def test_the_repr_is_one_short_line(fitted):
    text = repr(fitted)
    assert len(text) < 300 and "\n" not in text
    assert text.startswith("TrainedModel('mtae'") and "seeds=[1, 2]" in text


def test_sparse_cells_as_read_from_an_h5ad_train_and_predict_as_dense_ones(tiny_adata,
                                                                         control):
    sparse = tiny_adata.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    dense_fit, sparse_fit = (perturbjax.fit(cells, model="mtae", held_out="type_0", seeds=(1,),
                                            epochs=1, calibrate=False)
                             for cells in (tiny_adata, sparse))
    sparse_control = control.copy()
    sparse_control.X = sp.csr_matrix(sparse_control.X)
    np.testing.assert_array_equal(sparse_fit.predict(sparse_control, "stimulated").X,
                                  dense_fit.predict(control, "stimulated").X)


@pytest.mark.parametrize(("seeds", "message"), [((1, 1), "given more than once"),
                                                ((), "none given")])
def test_the_api_checks_seeds_as_the_launcher_does(tiny_adata, seeds, message):
    with pytest.raises(PerturbjaxError, match=message):
        perturbjax.fit(tiny_adata, model="mtae", seeds=seeds)


def test_cells_no_log_normalised_file_holds_are_refused_before_training(tiny_adata):
    scaled = tiny_adata.copy()
    scaled.X = scaled.X * 1e6
    with pytest.raises(PerturbjaxError, match=r"values up to .*log-normalised expression stays"):
        perturbjax.fit(scaled, model="mtae", seeds=(1,))
    counts = tiny_adata.copy()
    counts.X = counts.layers["counts"].astype(np.float32)
    with pytest.raises(PerturbjaxError, match=r"raw counts"):
        perturbjax.fit(counts, model="mtae", seeds=(1,))
    missing = tiny_adata.copy()
    missing.obs["cell_type"] = missing.obs["cell_type"].astype(object)
    missing.obs.iloc[0, missing.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(PerturbjaxError, match=r"'cell_type' has 1 missing values"):
        perturbjax.fit(missing, model="mtae", seeds=(1,))


def test_cells_to_predict_from_are_checked_before_any_prediction(fitted, control):
    with pytest.raises(PerturbjaxError, match="empty"):
        fitted.predict(control[:0], "stimulated")
    broken = control.copy()
    broken.X[0, 0] = np.nan
    with pytest.raises(PerturbjaxError, match="1 NaN or inf"):
        fitted.predict(broken, "stimulated")
    scaled = control.copy()
    scaled.X = scaled.X * 1e6
    with pytest.raises(PerturbjaxError, match="values up to"):
        fitted.predict(scaled, "stimulated")


def test_a_workdir_that_is_a_file_is_refused_before_training(tiny_adata, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(PerturbjaxError, match="is a file; expected a folder"):
        perturbjax.fit(tiny_adata, model="mtae", seeds=(1,), workdir=tmp_path / "file")


def test_the_control_condition_and_perturbed_cells_as_input_are_refused_by_what_they_are(
        fitted, tiny_adata):
    cells = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()].copy()
    with pytest.raises(PerturbjaxError, match="is the control: the model predicts"):
        fitted.predict(cells[cells.obs["condition"] == "control"].copy(), "control")
    with pytest.raises(PerturbjaxError, match=r"labelled \['stimulated'\].*predict from control"):
        fitted.predict(cells, "stimulated")


def test_evaluate_gives_the_benchmarks_raw_numbers_and_the_figure_is_written(fitted, control,
                                                                            tiny_adata,
                                                                            tmp_path):
    from perturbjax.metrics.evaluate import HeldOutReference, evaluate_prediction

    pred = fitted.predict(control, "stimulated")
    real = tiny_adata[(tiny_adata.obs["cell_type"] == "type_0").to_numpy()
                      & (tiny_adata.obs["condition"] == "stimulated").to_numpy()].copy()
    table = perturbjax.evaluate(pred, real, control)
    reference = HeldOutReference.build(np.asarray(control.X), np.asarray(real.X),
                                       control.var_names)
    expected = evaluate_prediction(reference, pred.X)
    for metric in ("pearson_delta_top100", "degs_robust", "edistance"):
        assert table.loc["prediction", metric] == pytest.approx(expected[metric], rel=1e-6)
    assert "discrimination" in table.attrs["note"]
    shuffled = real[:, ::-1].copy()  # genes matched by name
    assert perturbjax.evaluate(pred, shuffled, control).loc["prediction", "pearson_delta"] == (
        pytest.approx(table.loc["prediction", "pearson_delta"], rel=1e-6))
    with pytest.raises(PerturbjaxError, match="the real cells lack 1"):
        perturbjax.evaluate(pred, real[:, 1:].copy(), control)
    path = perturbjax.plot_response(pred, real, control, tmp_path / "response.png")
    assert path.stat().st_size > 1000


def test_no_calibration_fit_is_trained_when_no_finite_interval_could_come_of_it(tiny_adata,
                                                                                caplog):
    model = perturbjax.fit(tiny_adata, model="mean_shift", held_out="type_0", level=0.9)
    assert model.calibration is None
    message = next(r.getMessage() for r in caplog.records if "no calibration" in r.getMessage())
    assert "needs 9" in message and "levels up to 66.7% are finite with 2" in message


def test_progress_lines_reach_stderr_unless_logging_is_set_up_or_silenced(monkeypatch,
                                                                          capsys):
    import logging

    from perturbjax.progress import shown

    logger = logging.getLogger("perturbjax")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    for progress in (True, False):
        with shown(progress):
            for epoch in range(1, 101):
                logger.info("epoch %d/100  train 0.1", epoch)
            logger.info("fit: the model took 1s")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == (11 if progress else 0)
        assert not progress or lines[0] == "perturbjax: epoch 10/100  train 0.1"
    assert not logger.handlers


@pytest.mark.slow  # about 30 s on one core: the whole file through the recommended model
def test_the_real_kang_file_as_read_goes_through_fit_predict_evaluate_plot_save_load(
        kang_path, tmp_path):
    adata = ad.read_h5ad(kang_path)  # X as stored: a sparse matrix
    assert sp.issparse(adata.X)
    model = perturbjax.fit(adata, model="mtflow", held_out="B", seeds=(1,), epochs=2,
                           calibrate=False)
    in_b = (adata.obs["cell_type"] == "B").to_numpy()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    control, real = adata[in_b & ~stimulated], adata[in_b & stimulated]
    pred = model.predict(control, "stimulated", clip_negative=True)
    scores = perturbjax.evaluate(pred, real, control)
    assert np.isfinite(scores.loc["prediction", ["pearson_delta_top100", "edistance"]]).all()
    assert perturbjax.plot_response(pred, real, control, tmp_path / "b.png").is_file()
    model.save(tmp_path / "kang_model")
    np.testing.assert_array_equal(perturbjax.load(tmp_path / "kang_model").predict(
        control, "stimulated", clip_negative=True).X, pred.X)


def test_a_matrix_too_large_for_this_machine_is_refused_with_its_size_before_training(
        tiny_adata, monkeypatch):
    from perturbjax.data import datasets

    monkeypatch.setattr(datasets, "_physical_memory", lambda: 2 * 4 * 60 * 100)
    with pytest.raises(PerturbjaxError, match=r"\d+ cells x 60 genes take .* GiB as dense"):
        perturbjax.fit(tiny_adata, model="mean_shift", held_out="type_0", calibrate=False)


def test_a_model_without_a_shared_space_says_so_when_asked_to_embed(fitted, control):
    with pytest.raises(PerturbjaxError, match="no space shared by its members"):
        fitted.embed(control)
