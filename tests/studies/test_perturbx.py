"""PerturbX: MIX-seq loading, the semi-synthetic data, bags, the model, Shapley ranking, the
references and the cross-validated study."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.io
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV as SkRidgeCV
from sklearn.metrics import r2_score

from perturbjax.data import shared_data_dir
from perturbjax.data.bags import BagData
from perturbjax.data.gdsc import MUTATIONS_FILE, line_key, read_mutation_status
from perturbjax.data.mixseq import MIXSEQ_SPEC, load_mixseq, tp53_wild_type
from perturbjax.data.schema import DataValidationError, validate
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig, make_mixseq_like, make_toy_mixseq
from perturbjax.metrics.expression import mean_effect_scores
from perturbjax.models import effect_references as refs
from perturbjax.models import perturbx
from perturbjax.shapley import exact_shapley, sampled_shapley
from perturbjax.studies.perturbx import (
    DEFAULT_FOLDS,
    FoldCountError,
    PerturbXStudyConfig,
    fold_count,
    fold_rows,
    gene_weights,
    make_folds,
    run_on,
)
from perturbjax.studies.perturbx.data import prepare_cells
from perturbjax.studies.perturbx.report import MODEL, REFERENCES
from perturbjax.train import Folds, TrainConfig, fit
from tests.release_files import write_10x_experiment

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = perturbx.PerturbXConfig(n_select=8, encoder_hidden=16, decoder_hidden=32,
                                     bag_size=12, eval_bag_size=12)


# --- MIX-seq release format ------------------------------------------------------------------

@pytest.fixture()
def mixseq_root(tmp_path):
    rng = np.random.default_rng(0)
    genes = ["MDM2", "CDKN1A", "GAPDH", "ACTB"]
    for name in ("DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"):
        counts = rng.poisson(3.0, (6, 4)).astype(float)
        classes = pd.DataFrame({
            "barcode": [f"BC{i:03d}-1" for i in range(6)],
            "singlet_ID": ["NCIH226_LUNG", "NCIH226_LUNG", "BICR6_UPPER_AERODIGESTIVE_TRACT",
                           "BICR6_UPPER_AERODIGESTIVE_TRACT", "NCIH226_LUNG", None],
            "cell_quality": ["normal", "normal", "normal", "low_quality", "doublet", "normal"],
        })
        write_10x_experiment(tmp_path / name, counts, genes, classes)
    return tmp_path


def test_mixseq_loader_keeps_normal_singlets_with_their_counts_and_labels(mixseq_root):
    adata = load_mixseq(mixseq_root, ["DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"])
    assert adata.n_obs == 6  # 3 normal singlets with a call per experiment
    assert set(adata.obs["condition"]) == {"DMSO", "Idasanutlin"}
    validate(adata, MIXSEQ_SPEC)
    written = scipy.io.mmread(mixseq_root / "DMSO_24hr_expt1" / "matrix.mtx").toarray().T
    dmso = adata[adata.obs["experiment"] == "DMSO_24hr_expt1"]
    np.testing.assert_array_equal(dmso.X.toarray(), written[[0, 1, 2]])
    assert dmso.obs["cell_line"].tolist() == ["NCIH226_LUNG", "NCIH226_LUNG",
                                              "BICR6_UPPER_AERODIGESTIVE_TRACT"]
    assert list(adata.var_names) == ["MDM2", "CDKN1A", "GAPDH", "ACTB"]


def test_mixseq_loader_names_the_file_and_field_of_bad_input(mixseq_root):
    table = mixseq_root / "DMSO_24hr_expt1" / "classifications.csv"
    pd.read_csv(table).drop(columns="cell_quality").to_csv(table, index=False)
    with pytest.raises(DataValidationError, match=r"classifications.csv: missing columns "
                                                  r"\['cell_quality'\]"):
        load_mixseq(mixseq_root, ["DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"])
    with pytest.raises(DataValidationError, match="none of the experiments"):
        load_mixseq(mixseq_root, ["Idasanutlin_24hr_expt1"])


def test_mixseq_loader_refuses_barcodes_missing_from_the_matrix(mixseq_root):
    table = mixseq_root / "Idasanutlin_24hr_expt1" / "classifications.csv"
    classes = pd.read_csv(table)
    classes.loc[0, "barcode"] = "UNKNOWN-1"
    classes.to_csv(table, index=False)
    with pytest.raises(DataValidationError, match="1 barcodes are not in barcodes.tsv"):
        load_mixseq(mixseq_root, ["DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"])


def test_tp53_status_maps_ccle_names_through_the_gdsc_key():
    mutated = pd.Series({"NCI-H226": False, "BICR 6": True})
    status = tp53_wild_type(["NCIH226_LUNG", "BICR6_UPPER_AERODIGESTIVE_TRACT"], mutated)
    assert status.to_dict() == {"NCIH226_LUNG": True, "BICR6_UPPER_AERODIGESTIVE_TRACT": False}
    with pytest.raises(DataValidationError, match="no TP53 status"):
        tp53_wild_type(["A549_LUNG"], mutated)


# --- semi-synthetic data from the real GDSC lines ---------------------------------------------

@pytest.fixture(scope="module")
def gdsc_dir():
    data = shared_data_dir()
    if data is None or not (data / MUTATIONS_FILE).is_file():
        pytest.skip("real GDSC data absent: set PERTURBJAX_DATA or place ../shared/data/gdsc")
    return data


def test_shared_tp53_status_matches_the_data_readme(gdsc_dir):
    mutated = read_mutation_status(gdsc_dir / MUTATIONS_FILE, "TP53")
    assert len(mutated) == 964 and abs(mutated.mean() - 0.63) < 0.01  # data/README.md


def test_mcfarland_like_data_keeps_the_real_lines_status_and_a_wt_only_response(gdsc_dir):
    config = MixSeqSimConfig(n_genes=300, cells_per_condition=30)
    raw = make_mixseq_like(gdsc_dir, config)
    validate(raw, MIXSEQ_SPEC)
    truth = raw.uns["truth"]
    assert len(truth["lines"]) == 24 and truth["tp53_wt"].sum() == 7
    mutated = read_mutation_status(gdsc_dir / MUTATIONS_FILE)
    real = {line_key(k): v for k, v in mutated.items()}
    assert [not real[line_key(line)] for line in truth["lines"]] == truth["tp53_wt"].tolist()
    assert np.all(raw.X == np.round(raw.X)) and raw.X.min() >= 0
    bags = BagData.from_anndata(prepare_cells(raw), MIXSEQ_SPEC)
    programme = np.isin(bags.genes, truth["programme"])
    wt = np.isin(bags.contexts, truth["lines"][truth["tp53_wt"]])
    response = np.abs(bags.targets[:, programme]).mean(axis=1)
    assert response[wt].min() > response[~wt].max()


# --- bags -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    raw = make_toy_mixseq(n_lines=8, n_wild_type=4, n_genes=60, cells_per_condition=30)
    cells = prepare_cells(raw)
    return raw, cells, BagData.from_anndata(cells, MIXSEQ_SPEC)


def test_bag_targets_are_treated_minus_control_means_of_each_line(toy):
    _, cells, bags = toy
    frame = pd.DataFrame(cells.X, index=cells.obs_names)
    means = frame.groupby([cells.obs["cell_line"].to_numpy(),
                           cells.obs["condition"].to_numpy()]).mean()
    for row in range(bags.n_rows):
        line = bags.contexts[bags.row_context[row]]
        expected = means.loc[(line, "Idasanutlin")] - means.loc[(line, "DMSO")]
        np.testing.assert_allclose(bags.targets[row], expected, atol=1e-5)
        block = bags.cells[bags.treated_start[row]: bags.treated_start[row]
                           + bags.treated_count[row]]
        np.testing.assert_allclose(block.mean(0), means.loc[(line, "Idasanutlin")], atol=1e-5)


def test_bootstrap_indices_stay_inside_each_rows_block():
    start, count = jnp.array([0, 10, 13]), jnp.array([10, 3, 1])
    index = np.asarray(perturbx.draw_cells(jax.random.PRNGKey(0), start, count, 500))
    assert np.all(index >= np.asarray(start)[:, None])
    assert np.all(index < np.asarray(start + count)[:, None])
    assert len(np.unique(index[0])) == 10  # every cell of a block can be drawn


# --- the model --------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["mean", "attention"])
def model_and_variables(request, toy):
    _, _, bags = toy
    config = dataclasses.replace(TINY_MODEL, pooling=request.param)
    module = perturbx.PerturbX(len(bags.genes), config, total_steps=10)
    bag = jnp.asarray(bags.full_bags(np.arange(2))["bag"])
    variables = module.init({"params": jax.random.PRNGKey(0)}, bag, jnp.ones((2, 1)),
                            train=False)
    return module, variables, bags


def test_prediction_is_invariant_to_the_order_of_the_bag(model_and_variables):
    module, variables, bags = model_and_variables
    full = bags.full_bags(np.arange(bags.n_rows))
    bag, mask, p = map(jnp.asarray, (full["bag"], full["mask"], full["perturbation"]))
    order = jax.random.permutation(jax.random.PRNGKey(1), bag.shape[1])
    pred = module.apply(variables, bag, p, mask, train=False)[0]
    shuffled = module.apply(variables, bag[:, order], p, mask[:, order], train=False)[0]
    np.testing.assert_allclose(pred, shuffled, rtol=1e-5, atol=1e-6)
    trained = module.apply(variables, bag, p, mask, train=True, rngs={"gumbel": jax.random.key(2)},
                           mutable=["schedule"])[0][0]
    trained_shuffled = module.apply(variables, bag[:, order], p, mask[:, order], train=True,
                                    rngs={"gumbel": jax.random.key(2)}, mutable=["schedule"])[0][0]
    np.testing.assert_allclose(trained, trained_shuffled, rtol=1e-5, atol=1e-6)


def test_padding_masked_out_does_not_change_the_prediction(model_and_variables):
    module, variables, bags = model_and_variables
    full = bags.full_bags(np.arange(bags.n_rows))
    row = int(np.argmin(full["mask"].sum(1)))  # the smallest bag carries padding
    n = int(full["mask"][row].sum())
    assert n < full["mask"].shape[1]
    padded = module.apply(variables, jnp.asarray(full["bag"][row:row + 1]),
                          jnp.asarray(full["perturbation"][row:row + 1]),
                          jnp.asarray(full["mask"][row:row + 1]), train=False)[0]
    alone = module.apply(variables, jnp.asarray(full["bag"][row:row + 1, :n]),
                         jnp.asarray(full["perturbation"][row:row + 1]), train=False)[0]
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-6)


def test_training_anneals_the_selector_once_per_step_and_learns(toy):
    _, _, bags = toy
    steps_per_epoch, epochs = 3, 40
    objective = perturbx.build(TINY_MODEL, len(bags.genes), steps_per_epoch * epochs)
    config = TrainConfig(epochs=epochs, batch_size=2, learning_rates=(3e-3,), patience=None,
                         select_best=False)
    folds = Folds(np.arange(6)[None], np.arange(6)[None])
    result = fit(objective, bags.table(), bags.table(), [0], config,
                 shared={"cells": bags.cells}, folds=folds, on_epoch=lambda e, s: None)
    assert int(result.model_state["schedule"]["step"][0]) == steps_per_epoch * epochs
    assert result.val_loss[0, -1] < 0.7 * result.val_loss[0, 0]


# --- Shapley ranking --------------------------------------------------------------------------

def test_sampled_shapley_matches_exact_enumeration_on_a_bag_function():
    rng = np.random.default_rng(0)
    weights, readout = rng.normal(size=(7, 5)), rng.normal(size=5)

    def value(args, inputs):  # a mean-pooled nonlinear encoder, like phi(X) . w1
        w, r = args
        return (jnp.tanh(inputs @ w) @ r).mean(-1)

    bag = rng.normal(size=(6, 7)).astype(np.float32)
    baseline = bag.mean(0) * 0.0 + rng.normal(size=7).astype(np.float32)
    exact = exact_shapley(lambda x: value((weights, readout), x), bag, baseline)
    estimate = sampled_shapley(value, (weights, readout), jnp.asarray(bag),
                               jnp.asarray(baseline), jax.random.PRNGKey(0), 1000)
    assert np.all(np.abs(estimate.values - exact) <= 4 * estimate.standard_error + 1e-6)
    np.testing.assert_allclose(
        estimate.values.sum(),
        value((weights, readout), bag[None]) - value((weights, readout),
                                                      np.broadcast_to(baseline, bag.shape)[None]),
        rtol=1e-4)
    assert estimate.converged


def test_too_few_permutations_are_reported_as_not_converged():
    def value(args, inputs):
        return jnp.sin(3 * inputs).prod(-1) + inputs.sum(-1)
    x = jnp.linspace(0.5, 1.5, 8)
    estimate = sampled_shapley(value, None, x, jnp.zeros(8), jax.random.PRNGKey(0), 4,
                               tolerance=1e-3)
    assert not estimate.converged


# --- references and scores --------------------------------------------------------------------

def test_references_against_direct_computation():
    rng = np.random.default_rng(1)
    effects, profiles = rng.normal(size=(12, 5)), rng.normal(size=(12, 9))
    test_profiles = rng.normal(size=(3, 9))
    groups = np.array([0, 1] * 6)
    np.testing.assert_allclose(refs.group_mean_effect(effects, groups, np.array([1, 0])),
                               [effects[1::2].mean(0), effects[::2].mean(0)])
    distances = ((test_profiles[0] - profiles) ** 2).sum(1)
    np.testing.assert_allclose(refs.nearest_lines_effect(effects, profiles, test_profiles, 2)[0],
                               effects[np.argsort(distances)[:2]].mean(0))
    sk = SkRidgeCV(alphas=refs.RIDGE_ALPHAS).fit(profiles, effects)
    np.testing.assert_allclose(refs.ridge_effect(effects, profiles, test_profiles),
                               sk.predict(test_profiles), rtol=1e-6, atol=1e-8)


def test_effect_scores_follow_their_definitions():
    rng = np.random.default_rng(2)
    control, truth, pred = rng.normal(size=50) + 3, rng.normal(size=50), rng.normal(size=50)
    top = np.arange(20)
    scores = mean_effect_scores(control, truth, pred, top)
    assert scores["r2_effect"] == pytest.approx(r2_score(truth[top], pred[top]))
    assert scores["r2"] == pytest.approx(
        pearsonr(control[top] + truth[top], control[top] + pred[top])[0] ** 2)
    assert scores["mse_all"] == pytest.approx(np.mean((truth - pred) ** 2))


# --- the study --------------------------------------------------------------------------------

def test_folds_are_stratified_and_never_train_on_held_out_lines(toy):
    _, _, bags = toy
    status = np.array([True, False] * 4)
    tests = make_folds(status, 4, seed=0)
    assert sorted(np.concatenate(tests).tolist()) == list(range(8))
    assert all(status[t].sum() == 1 for t in tests)
    rows = fold_rows(bags, tests, seed=0)
    for fold, test in enumerate(tests):
        assert not np.isin(bags.row_context[rows[fold]], test).any()
    uneven = make_folds(status, 3, seed=0)  # 8 lines in 3 folds: 3, 3, 2 held out
    padded = fold_rows(bags, uneven, seed=0)
    assert padded.shape == (3, 6)
    for fold, test in enumerate(uneven):
        assert not np.isin(bags.row_context[padded[fold]], test).any()
        assert len(set(padded[fold])) == 8 - len(test)
    weights = gene_weights(bags, rows, "response")
    np.testing.assert_allclose(weights[0] * np.abs(bags.targets[rows[0]]).mean(0).mean(),
                               np.abs(bags.targets[rows[0]]).mean(0), rtol=1e-5)


@pytest.fixture(scope="module")
def toy_study(toy, tmp_path_factory):
    raw, cells, _ = toy
    config = PerturbXStudyConfig(model=TINY_MODEL, n_folds=4, seeds=(0, 1), epochs=20,
                                 batch_size=2, learning_rate=3e-3, shapley_permutations=16,
                                 shapley_cells=6)
    workdir = tmp_path_factory.mktemp("perturbx")
    return run_on(cells, config, workdir, raw.uns["truth"]["programme"]).tables, workdir


def test_the_study_scores_every_model_on_every_held_out_line(toy_study, toy):
    results, workdir = toy_study
    scores = results["scores"]
    assert set(scores["model"]) == {MODEL, *REFERENCES}
    per_model = scores.groupby("model")["line"].agg(["nunique", "size"])
    assert (per_model["nunique"] == 8).all()
    assert per_model.loc[MODEL, "size"] == 8 * 2  # every line once per seed
    for name in ("summary.md", "scores.csv", "ranking.csv", "separation.csv",
                 "figures/latents_pca.png", "figures/gene_importance.png",
                 "figures/effect_responsive.png", "figures/effect_non_responsive.png"):
        assert (workdir / name).is_file(), name
    ranking = results["ranking"]
    assert ranking["importance"].sum() == pytest.approx(1.0, rel=1e-5)
    diagnostics = results["diagnostics"]
    assert set(diagnostics["shapley_permutations"]) == {16}
    for genes in diagnostics["selected_genes"].str.split():
        assert len(set(genes)) == len(genes) == TINY_MODEL.n_select  # no gene read twice


def test_default_folds_fit_the_smaller_status_class_and_too_many_are_refused():
    status = np.array([True] * 3 + [False] * 5)
    assert fold_count(status, None) == 3  # the default 6, capped by the 3 wild-type lines
    assert fold_count(np.array([True] * 7 + [False] * 17), None) == DEFAULT_FOLDS
    with pytest.raises(FoldCountError, match=r"4 folds need at least 4 lines of each status "
                                             r"class, but the data has 5 lines with "
                                             r"status=False, 3 lines with status=True"):
        fold_count(status, 4)
    with pytest.raises(FoldCountError, match="at least 2 lines of each of two"):
        fold_count(np.array([True] + [False] * 5), None)


def test_the_launcher_names_the_flag_and_class_sizes_when_folds_cannot_be_honoured(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "perturbx.py"), "--toy", "--folds", "5",
         "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "perturbx.py: error: --folds (5): 5 folds need at least 5 lines of each status "
        "class, but the data has 5 lines with tp53_wt=False, 3 lines with tp53_wt=True; ask "
        "for at most 3 folds")
    assert not any(tmp_path.iterdir())  # refused before anything was written
