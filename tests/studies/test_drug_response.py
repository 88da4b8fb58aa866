"""Drug sensitivity: GDSC loaders, features, the compiled grid, GPDS / DREEP scores, the study."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import ParameterGrid

from perturbjax.data import shared_data_dir
from perturbjax.data.gdsc import (
    line_key,
    load_gdsc,
    load_gdsc_release,
    match_lines,
    read_response,
)
from perturbjax.data.preprocess import Standardiser
from perturbjax.data.schema import DataValidationError
from perturbjax.drug.features import QuantileBins, within_sample_quantiles
from perturbjax.drug.gpds import (
    enrichment_pvalues,
    enrichment_scores,
    gficf,
    integrated_gradients,
    network_gpds,
    null_enrichment_scores,
    pearson_gpds,
    score_cells,
)
from perturbjax.drug.grid import (
    GridData,
    GridPoint,
    GridRun,
    parameter_grid,
    predict,
    product_runs,
    train_runs,
)
from perturbjax.drug.synthetic import make_toy_drug_data
from perturbjax.studies import drug_response as study

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- GDSC loaders


def write_release(tmp_path):
    """A tiny fitted dose-response table and RMA matrix in the official release's layout."""
    response = pd.DataFrame({
        "DATASET": "GDSC2", "COSMIC_ID": [905949, 724855, 687800, 905949, 1],
        "CELL_LINE_NAME": ["NCI-H838", "A549", "HCC-827", "NCI-H838", "NOEXPR"],
        "DRUG_ID": [1003, 1003, 1003, 1004, 1003],
        "DRUG_NAME": ["Camptothecin"] * 3 + ["Cisplatin", "Camptothecin"],
        "LN_IC50": [-1.33, -3.21, -0.33, 2.0, 0.5], "AUC": [0.9, 0.7, 0.95, 0.99, 0.9],
    })
    rma = pd.DataFrame({
        "GENE_SYMBOLS": ["TP53", "MYC", "", "MYC"], "GENE_title": ["a", "b", "c", "d"],
        "DATA.905949": [1.0, 2.0, 9.0, 4.0], "DATA.724855": [5.0, 6.0, 9.0, 8.0],
        "DATA.687800": [7.0, 8.0, 9.0, 10.0], "DATA.999999": [0.0, 0.0, 0.0, 0.0],
    })
    response.to_csv(tmp_path / "fitted.csv", index=False)
    rma.to_csv(tmp_path / "rma.txt", sep="\t", index=False)
    return tmp_path / "fitted.csv", tmp_path / "rma.txt"


def test_release_files_give_matched_expression_and_response(tmp_path):
    fitted, rma = write_release(tmp_path)
    data = load_gdsc_release(fitted, rma, "Camptothecin")
    assert list(data.response.index) == ["NCI-H838", "A549", "HCC-827"]
    np.testing.assert_allclose(data.response, [-1.33, -3.21, -0.33])
    # the empty symbol is dropped, MYC's two probes averaged; columns named via COSMIC IDs
    assert sorted(data.expression.columns) == ["MYC", "TP53"]
    np.testing.assert_allclose(data.expression.loc["NCI-H838", ["TP53", "MYC"]], [1.0, 3.0])
    np.testing.assert_allclose(data.expression.loc["HCC-827", ["TP53", "MYC"]], [7.0, 9.0])


def test_bad_gdsc_tables_give_errors_naming_file_and_field(tmp_path):
    fitted, rma = write_release(tmp_path)
    with pytest.raises(DataValidationError, match="did you mean"):
        read_response(fitted, "Camptothecine")
    table = pd.read_csv(fitted)
    table.loc[0, "LN_IC50"] = np.nan
    table.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(DataValidationError, match=r"nan\.csv.*LN_IC50.*NCI-H838"):
        read_response(tmp_path / "nan.csv", "Camptothecin")
    table.drop(columns="COSMIC_ID").fillna(0).to_csv(tmp_path / "nocosmic.csv", index=False)
    with pytest.raises(DataValidationError, match="COSMIC_ID"):
        load_gdsc_release(tmp_path / "nocosmic.csv", rma)


def test_line_names_match_across_punctuation_and_colliding_names_are_dropped():
    assert line_key("NCI-H838") == line_key("H838") == line_key("NCIH838") == "H838"
    assert line_key("HCC-827") == "HCC827"
    expression = pd.DataFrame(np.eye(3), index=["H838", "KMH2", "A549"], columns=list("abc"))
    response = pd.Series([1.0, 2.0, 3.0, 4.0], index=["NCI-H838", "KM-H2", "KMH-2", "A549"])
    with pytest.warns(UserWarning, match="KM-H2"):
        data = match_lines(expression, response, "drug")
    assert list(data.response.index) == ["NCI-H838", "A549"]
    np.testing.assert_array_equal(data.expression.to_numpy(), np.eye(3)[[0, 2]])


def test_shared_gdsc_has_the_specs_camptothecin_values_for_the_cellbench_lines():
    data_dir = shared_data_dir()
    if data_dir is None or not (data_dir / "gdsc").is_dir():
        pytest.skip("real GDSC data absent: set PERTURBJAX_DATA or place ../shared/data/gdsc")
    with pytest.warns(UserWarning, match="collide"):
        data = load_gdsc(data_dir, "Camptothecin")
    by_key = {line_key(n): v for n, v in data.response.items()}
    expected = {"A549": -3.21, "H838": -1.33, "H1975": -1.47, "H2228": -2.71, "HCC827": -0.33}
    for line, value in expected.items():
        assert by_key[line] == pytest.approx(value, abs=0.01)
    assert data.expression.shape == (len(data.response), 6163)


# ---------------------------------------------------------------- features


def test_within_sample_quantiles_ignore_any_monotone_per_sample_scale():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(1.0, 5.0, size=(6, 40))).astype(float)
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    zscored = (logged - logged.mean(1, keepdims=True)) / logged.std(1, keepdims=True)
    q = within_sample_quantiles(counts)
    np.testing.assert_allclose(q, within_sample_quantiles(zscored), atol=1e-6)
    for row, values in zip(q, counts, strict=True):  # ties share a value; order is kept
        zeros = values == 0
        if zeros.sum() > 1:
            assert np.ptp(row[zeros]) == 0
        assert np.all(np.diff(row[np.argsort(values, kind="stable")]) >= 0)
    assert q.min() > 0 and q.max() < 1


def test_quantile_bins_match_pandas_qcut():
    values = np.random.default_rng(1).normal(size=(200, 3))
    bins = QuantileBins(20).fit(values).transform(values)
    for g in range(3):
        np.testing.assert_array_equal(bins[:, g], pd.qcut(values[:, g], 20, labels=False))


def test_standardiser_uses_training_rows_only():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaler = Standardiser(train)
    np.testing.assert_allclose(scaler(np.array([[2.0, 7.0]])), [[0.0, 2.0]])
    np.testing.assert_allclose(scaler.inverse(scaler(train)), train, atol=1e-6)


# ---------------------------------------------------------------- the compiled grid


@pytest.fixture(scope="module")
def fold_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 70, 12)).astype(np.float32)
    y = (np.tanh(x[..., 0]) + 0.5 * x[..., 1] + 0.1 * rng.normal(size=(3, 70))).astype(np.float32)
    rows = np.stack([rng.permutation(70)[:50] for _ in range(3)]).astype(np.int32)
    return GridData(x, y, rows, np.array([50, 50, 48]))


def test_parameter_grid_is_scikit_learns_in_the_same_order():
    axes = {"hidden": [(8,), (4, 2)], "activation": ["relu", "tanh"],
            "learning_rate": [0.1, 0.01], "batch_size": [8, 16], "epochs": [1, 2]}
    expected = [GridPoint(tuple(p["hidden"]), p["activation"], p["learning_rate"],
                          p["batch_size"], p["epochs"]) for p in ParameterGrid(axes)]
    assert parameter_grid(**axes) == expected


def test_a_run_trained_inside_the_grid_equals_it_trained_alone(fold_data):
    points = parameter_grid(hidden=((8, 4),), activation=("relu", "tanh"),
                            learning_rate=(1e-2, 3e-3), batch_size=(8,), epochs=(2, 4))
    grid = train_runs(product_runs(points, [0, 1, 2], [0, 1]), fold_data)
    assert grid.predictions.shape == (len(points) * 6, 70) and not grid.diverged.any()
    # points 1 (relu) and 4 (tanh) share shapes and epochs: one compiled single-run program
    for index in (6 * 1 + 5, 6 * 4 + 2):
        alone = train_runs([grid.runs[index]], fold_data)
        np.testing.assert_allclose(alone.predictions[0], grid.predictions[index], atol=1e-5)


def test_a_shorter_epoch_count_is_a_snapshot_of_the_longer_run(fold_data):
    short = GridPoint((8,), "tanh", 1e-2, 8, 2)
    long = GridPoint((8,), "tanh", 1e-2, 8, 5)
    both = train_runs([GridRun(short, 1, 3), GridRun(long, 1, 3)], fold_data)
    np.testing.assert_allclose(both.predictions[0],
                               train_runs([GridRun(short, 1, 3)], fold_data).predictions[0],
                               atol=1e-5)
    assert np.abs(both.predictions[0] - both.predictions[1]).max() > 1e-3


def test_a_diverging_member_is_flagged_and_leaves_the_others_alone(fold_data):
    good = GridPoint((8,), "relu", 1e-2, 8, 2)
    bad = GridPoint((8,), "relu", 1e12, 8, 2)
    result = train_runs([GridRun(bad, 0, 0), GridRun(good, 0, 0)], fold_data)
    assert result.diverged.tolist() == [True, False]
    np.testing.assert_allclose(result.predictions[1],
                               train_runs([GridRun(good, 0, 0)], fold_data).predictions[0],
                               atol=1e-5)


def test_kept_parameters_reproduce_the_runs_predictions(fold_data):
    point = GridPoint((8, 4), "tanh", 1e-2, 16, 3)
    result = train_runs([GridRun(point, 2, 0), GridRun(point, 2, 1)], fold_data, keep_params=True)
    for params, pred in zip(result.params, result.predictions, strict=True):
        np.testing.assert_allclose(predict(point, params, fold_data.features[2]), pred,
                                   atol=1e-5)
    assert np.abs(result.predictions[0] - result.predictions[1]).max() > 1e-4


def test_grid_refuses_bad_runs(fold_data):
    with pytest.raises(ValueError, match="folds"):
        train_runs([GridRun(GridPoint((4,), "relu", 0.1, 8, 1), 7, 0)], fold_data)
    with pytest.raises(ValueError, match="batch"):
        train_runs([GridRun(GridPoint((4,), "relu", 0.1, 64, 1), 0, 0)], fold_data)
    with pytest.raises(ValueError, match="activation"):
        GridPoint((4,), "gelu", 0.1, 8, 1)


# ---------------------------------------------------------------- GPDS and DREEP


def running_sum_es(members: np.ndarray, n_genes: int) -> float:
    """The KS enrichment score by its definition: walk the whole ranking."""
    hit = np.zeros(n_genes, bool)
    hit[members] = True
    steps = np.where(hit, 1 / hit.sum(), -1 / (n_genes - hit.sum()))
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    return walk.max() if walk.max() >= -walk.min() else walk.min()


def test_enrichment_scores_equal_the_running_sum_definition():
    rng = np.random.default_rng(0)
    sets = np.stack([rng.choice(50, 7, replace=False) for _ in range(200)])
    sets[0] = np.arange(7)           # all at the top: ES = 1
    sets[1] = np.arange(43, 50)      # all at the bottom: ES = -1
    expected = [running_sum_es(s, 50) for s in sets]
    np.testing.assert_allclose(enrichment_scores(sets, 50), expected, atol=1e-12)
    assert enrichment_scores(sets[:2], 50).tolist() == pytest.approx([1.0, -1.0])


def test_permutation_pvalues_follow_fgsea_simple():
    null = np.array([-0.5, -0.2, 0.1, 0.3, 0.6])
    p = enrichment_pvalues(np.array([0.3, 0.7, -0.3, -0.6]), null)
    np.testing.assert_allclose(p, [(1 + 2) / (1 + 3), 1 / 4, (1 + 1) / (1 + 2), 1 / 3])


def test_cells_whose_genes_head_the_ranking_are_called_resistant():
    rng = np.random.default_rng(2)
    gpds = np.linspace(1, -1, 300)                     # gene g is the g-th most resistant
    top = np.stack([rng.choice(60, 20, replace=False) for _ in range(30)])
    bottom = np.stack([rng.choice(np.arange(240, 300), 20, replace=False) for _ in range(30)])
    random = np.stack([rng.choice(300, 20, replace=False) for _ in range(140)])
    null = null_enrichment_scores(300, 20, 500, seed=0)
    calls = score_cells(np.concatenate([top, bottom, random]), gpds, null, fdr=0.1)
    assert (calls["call"][:30] == 1).all() and (calls["call"][30:60] == -1).all()
    assert (calls["call"][60:] != 0).mean() < 0.1


def test_pearson_gpds_is_numpys_correlation():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=40)
    x[:, 4] = 1.0
    expected = [np.corrcoef(x[:, g], y)[0, 1] for g in range(4)] + [0.0]
    np.testing.assert_allclose(pearson_gpds(x, y), expected, atol=1e-12)


def test_integrated_gradients_are_complete_and_linear_gpds_is_the_scaled_coefficient():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(25, 6)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=6), jnp.float32)

    def nonlinear(row):
        return jnp.tanh(row @ w) + (row[0] * row[1]) ** 2

    ig = integrated_gradients(nonlinear, x, np.zeros(6), steps=256)
    np.testing.assert_allclose(ig.sum(1), [nonlinear(r) - nonlinear(jnp.zeros(6)) for r in x],
                               atol=2e-3)
    linear = network_gpds(lambda row: row @ w, x, x.mean(0), steps=8)
    np.testing.assert_allclose(linear, np.asarray(w) * np.abs(x - x.mean(0)).mean(0),
                               rtol=1e-4)


def test_gficf_is_l2_normalised_gene_frequency_times_inverse_cell_frequency():
    counts = np.array([[3.0, 0.0, 1.0], [1.0, 2.0, 0.0], [0.0, 4.0, 4.0]])
    idf = np.log((1 + 3) / (1 + (counts > 0).sum(0))) + 1
    expected = counts / counts.sum(1, keepdims=True) * idf
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(gficf(counts), expected, atol=1e-12)


# ---------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    bulk, cells, truth = make_toy_drug_data(cells_per_line=30, seed=1)
    config = study.DrugStudyConfig(
        grid="small", folds=3, repeats=1, final_seeds=(0,), gene_filter=None,
        held_out_lines=tuple(truth["held_out"]), permutations=200)
    workdir = tmp_path_factory.mktemp("drug")
    tissues = pd.Series(np.arange(len(bulk.response)) % 2, index=bulk.response.index.map(line_key))
    results = study.run_on(bulk, cells, config, workdir, tissues.map({0: "a", 1: "b"})).tables
    return results, truth, workdir, len(bulk.response)


def test_study_keeps_the_single_cell_lines_out_of_every_fold(toy_study):
    results, truth, _, n_lines = toy_study
    # each pool line is tested exactly once per repeat, and only pool lines are
    assert results["cv"].groupby("model")["n_test"].sum().unique().tolist() == [
        n_lines - len(truth["held_out"])]
    assert set(results["transfer"]["line"]) == {line_key(n) for n in truth["held_out"]}


def test_study_beats_the_mean_on_held_out_lines_and_recovers_the_response_genes(toy_study):
    results, truth, _, _ = toy_study
    r2 = results["cv"].groupby("model")["r2"].mean()
    assert r2["ridge"] > 0.3 and r2["mlp (nested)"] > r2["mean"] + 0.1
    gpds = results["gpds"].set_index("gene")
    true_genes = set(truth["resistance"] + truth["sensitivity"])
    top = set(gpds["pcc"].abs().nlargest(len(true_genes)).index)
    chance = len(true_genes) ** 2 / len(gpds)  # 1.2 of the 12 top genes
    assert len(top & true_genes) > 3 * chance
    assert gpds.loc[truth["resistance"], "network"].mean() > 0
    assert gpds.loc[truth["sensitivity"], "network"].mean() < 0


def test_study_writes_its_tables_and_figures(toy_study):
    _, _, workdir, _ = toy_study
    for name in ("cv.csv", "grid.csv", "out_of_fold.csv", "within_lineage.csv", "transfer.csv",
                 "gpds.csv", "dreep.csv", "summary.md", "figures/cell_predictions.png",
                 "figures/gpds.png", "figures/dreep_es.png"):
        assert (workdir / name).is_file(), name
    assert "Transfer to single cells" in (workdir / "summary.md").read_text()


def test_lineage_mean_and_within_lineage_spearman_follow_their_definitions():
    lineages = np.array(["lung", "lung", "lung", "skin", "skin", "skin", "bone"])
    y = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0])
    np.testing.assert_allclose(study.lineage_mean(lineages, y, np.array([0, 1, 3, 4]),
                                                  np.array([2, 5, 6])), [1.5, 15.0, 8.25])
    oof = pd.DataFrame({"repeat": 0, "row": np.arange(7), "model": "m",
                        "prediction": [3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 0.0]})
    table = study.within_lineage(oof, lineages, y, min_lines=3)
    assert table["m"].to_dict() == {"lung": -1.0, "skin": 1.0}
    assert table["n_lines"].tolist() == [3, 3]


def test_study_config_refuses_unknown_settings():
    with pytest.raises(ValueError, match="features"):
        study.DrugStudyConfig(features="raw")
    with pytest.raises(ValueError, match="grid"):
        study.DrugStudyConfig(grid="huge")


