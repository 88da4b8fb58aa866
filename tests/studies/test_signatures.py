"""Signature-exposure data and study: loaders, generator, splits, and the study end to end."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from perturbjax.data import DataValidationError, shared_data_dir
from perturbjax.data.exposures import load_expression_exposures
from perturbjax.data.synthetic_exposures import make_toy_exposure_data
from perturbjax.studies import signatures as study
from tests.release_files import write_original_tables


def known_answer(n_cells=240, n_genes=120, seed=0):
    """Poisson counts; each of 3 exposures a monotone function of 4 known genes."""
    return make_toy_exposure_data(n_cells=n_cells, n_genes=n_genes, seed=seed)


TINY = study.SignatureStudyConfig(n_genes=100, cv=3, lasso_alphas=15, bootstrap=50,
                                  stability=2, max_clusters=4,
                                  experiments=("random", "leave_one_cluster_out"))


def test_loader_aligns_cells_and_names_the_dropped_ones(tmp_path, caplog):
    data = known_answer(n_cells=12, n_genes=12)
    counts = pd.DataFrame(data.X, index=data.obs_names, columns=data.var_names)
    exposures = data.obsm["exposures"]
    paths = write_original_tables(tmp_path, counts.drop(index="cell_0"),
                                  exposures.drop(index="cell_5"))
    with caplog.at_level(logging.WARNING, logger="perturbjax"):
        loaded = load_expression_exposures(*paths)
    assert loaded.n_obs == 10
    assert "cell_0" not in loaded.obs_names and "cell_5" not in loaded.obs_names
    assert "cell_5" in caplog.text and "cell_0" in caplog.text
    np.testing.assert_allclose(loaded.obsm["exposures"].loc["cell_3"], exposures.loc["cell_3"])
    np.testing.assert_allclose(loaded[loaded.obs_names == "cell_3"].X[0], counts.loc["cell_3"])


@pytest.mark.parametrize("value, expectation", [(-1.0, "non-negative"), (np.nan, "finite")])
def test_loader_refuses_bad_exposures_naming_cell_and_signature(tmp_path, value, expectation):
    data = known_answer(n_cells=6, n_genes=12)
    counts = pd.DataFrame(data.X, index=data.obs_names, columns=data.var_names)
    exposures = data.obsm["exposures"].copy()
    exposures.loc["cell_2", "signature_1"] = value
    paths = write_original_tables(tmp_path, counts, exposures)
    with pytest.raises(DataValidationError, match=f"{expectation}.*'cell_2'.*'signature_1'"):
        load_expression_exposures(*paths)


def test_loader_refuses_duplicated_cells_and_disjoint_tables(tmp_path):
    data = known_answer(n_cells=6, n_genes=12)
    counts = pd.DataFrame(data.X, index=data.obs_names, columns=data.var_names)
    exposures = data.obsm["exposures"]
    paths = write_original_tables(tmp_path, counts, pd.concat([exposures, exposures.iloc[:1]]))
    with pytest.raises(DataValidationError, match="duplicated"):
        load_expression_exposures(*paths)
    paths = write_original_tables(tmp_path, counts, exposures.set_axis(
        [f"x{i}" for i in range(6)]))
    with pytest.raises(DataValidationError, match="share no cell"):
        load_expression_exposures(*paths)


def test_cluster_split_holds_out_whole_clusters():
    labels = np.repeat(np.arange(6), [40, 30, 15, 10, 3, 2])
    split = study.cluster_split(labels)
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(labels)))
    parts = [set(labels[split[p]]) for p in ("train", "validation", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert all(len(split[p]) > 0 for p in split)


def test_cluster_split_needs_three_clusters():
    with pytest.raises(ValueError, match="at least 3 clusters"):
        study.cluster_split(np.repeat([0, 1], 10))


def test_study_recovers_a_known_program_and_beats_its_permutation_baseline(tmp_path):
    data = known_answer()
    results = study.run_on(data, TINY, tmp_path)
    test = results.metrics.set_index(["experiment", "part", "model"])
    for model in study.MODELS:
        real = test.loc[("random", "test", model), "r2"]
        assert real > 0.5
        assert test.loc[("random_permuted", "test", model), "r2"] < real - 0.4
        assert test.loc[("random", "test", "training_mean"), "r2"] < real - 0.4
    random_genes = results.genes[(results.genes.experiment == "random")
                                 & (results.genes.part == "test")]
    assert random_genes["ridge_top_precision"].mean() >= 0.3   # 4 true genes in a top 10
    assert random_genes["lasso_selected_recall"].mean() >= 0.75
    loco = results.metrics[results.metrics.experiment == "leave_one_cluster_out"]
    assert loco["part"].nunique() >= 3
    for name in ("metrics.csv", "genes.csv", "stability.csv", "summary.md", "top_genes.json",
                 "figures/predicted_vs_true_random.png", "figures/r2_per_signature.png",
                 "figures/lasso_top_genes_random.png"):
        assert (tmp_path / name).is_file(), name


def test_study_refuses_data_without_exposures(tmp_path):
    data = known_answer(n_cells=20, n_genes=12)
    del data.obsm["exposures"]
    with pytest.raises(ValueError, match="exposures"):
        study.run_on(data, TINY, tmp_path)


@pytest.fixture(scope="module")
def semi_synthetic():
    data = shared_data_dir()
    if data is None or not (data / "cellbench").is_dir():
        pytest.skip("real CellBench / signature data absent: set PERTURBJAX_DATA")
    from perturbjax.data.synthetic_exposures import ExposureSimConfig, make_exposure_data
    return make_exposure_data(data, ExposureSimConfig(n_cells=300, seed=1))


def test_semi_synthetic_exposures_follow_the_real_distribution_and_catalogues(semi_synthetic):
    data = shared_data_dir()
    tumours = pd.read_csv(data / "signatures/nikzainal560_breast_sbs_exposures.csv",
                          index_col=0)
    exposures = semi_synthetic.obsm["exposures"]
    assert list(exposures.columns) == ["SBS1", "SBS2", "SBS5", "SBS8", "SBS13", "SBS18"]
    for name in exposures:
        assert exposures[name].min() >= tumours[name].min()
        assert exposures[name].max() <= tumours[name].max()
    for genes in semi_synthetic.uns["truth"].values():
        assert set(genes) <= set(semi_synthetic.var_names)
    catalogues = semi_synthetic.obsm["catalogues"].to_numpy()
    expected = exposures.to_numpy() @ semi_synthetic.uns["profiles"].to_numpy().T
    assert catalogues.shape == (semi_synthetic.n_obs, 96)
    # Poisson noise: the mutation totals match the exposure totals to within a few percent
    np.testing.assert_allclose(catalogues.sum(1), expected.sum(1), rtol=0.2)
