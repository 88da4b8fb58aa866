import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from perturbjax.data import MultiDoseConfig, SpeciesConfig, hold_out, make_perturbation_data
from perturbjax.metrics import HeldOutReference, evaluate_prediction
from perturbjax.metrics.conformal import leave_one_context_out
from perturbjax.models import floor_references, register_model, unregister_model
from perturbjax.models.peer import PeerModel
from perturbjax.studies import ood
from perturbjax.studies.ood.report import headline_table
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
# The study's machinery on the tiny data: mtae stands for any learned model (the recommended
# mtflow trains on batches of 128 pairs, more than the tiny pool holds).
TINY_STUDY = ood.OODConfig(held_out=("type_0",), seeds=(1, 2), epochs=3, synthetic=TINY,
                           checkpoint_every=2, ceiling_repeats=2,
                           models=("mtae", "control", "mean_shift", "mean_shift_balanced",
                                   "linear"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ood")
    return ood.run(TINY_STUDY, workdir), workdir


def test_study_writes_table_summary_figures_checkpoints_and_config(study):
    results, workdir = study
    for name in ("metrics.csv", "summary.md", "ranking.csv", "config.json",
                 "figures/metric_bars.png", "figures/means_type_0_stimulated.png",
                 "figures/pca_type_0_stimulated.png", "figures/response_type_0_stimulated.png",
                 "figures/calibrated_heatmap.png"):
        assert (workdir / name).is_file(), name
    assert any((workdir / "checkpoints" / "mtae" / "type_0").rglob("*"))
    table = pd.read_csv(workdir / "metrics.csv")
    # The floor references are scored whether asked for or not: calibration needs them.
    assert set(table["model"]) == {*TINY_STUDY.models, *floor_references()}
    assert table.loc[table.model == "mtae", "seed"].tolist() == [1, 2]
    assert set(table["context"]) == {"type_0"}
    for metric in ("pearson_delta_top100", "degs_robust", "edistance", "r2_top100"):
        assert {metric, metric + "_ceiling", metric + "_calibrated"} <= set(table.columns)
    summary = (workdir / "summary.md").read_text()
    assert summary.index("Response metrics, calibrated") < summary.index(
        "The source documents' metrics")
    assert "penalty ranking" in summary


def test_every_prediction_is_a_file_scanpy_reads_and_the_metrics_score_it(study):
    results, workdir = study
    saved = sc.read_h5ad(workdir / "predictions" / "mtae" / "type_0.h5ad")
    members = [saved.layers["member_1"], saved.layers["member_2"]]
    np.testing.assert_allclose(saved.X, np.mean(members, axis=0), rtol=1e-6)
    assert (saved.obs["condition"] == "stimulated").all()
    assert saved.obs["perturbjax_prediction"].all()
    reference = sc.read_h5ad(workdir / "predictions" / "mean_shift" / "type_0.h5ad")
    assert list(reference.layers) == ["member_reference"]
    # Re-scored from the file, the first seed's row comes back to the last digit.
    split = hold_out(make_perturbation_data(TINY), TINY_STUDY.spec, "type_0")
    truth = HeldOutReference.build(split.control.X, split.truth.X, split.control.var_names)
    row = results.metrics.query("model == 'mtae' and seed == 1").iloc[0]
    again = evaluate_prediction(truth, saved.layers["member_1"], seed=1)
    assert again["pearson_delta_top100"] == row["pearson_delta_top100"]


def test_control_reference_scores_as_the_control_cells(study):
    results, _ = study
    control = results.metrics[results.metrics.model == "control"].iloc[0]
    assert np.isnan(control["euclidean_ratio"])
    assert control["degs"] <= 100


def test_same_seed_gives_identical_metrics_and_other_seeds_differ(study, tmp_path):
    results, _ = study
    again = ood.run(dataclasses.replace(TINY_STUDY, figures=False), tmp_path)
    cols = ["r2_all", "edistance", "wasserstein", "degs"]
    first = results.metrics[results.metrics.model == "mtae"][cols].to_numpy()
    second = again.metrics[again.metrics.model == "mtae"][cols].to_numpy()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[0], first[1])


def test_coverage_is_scored_per_context_on_the_other_contexts_and_their_common_genes(tmp_path):
    # HVGs are chosen per training pool, so the contexts' genes differ: the intervals compare
    # the genes they share, by name, whatever each file's order.
    synthetic = dataclasses.replace(TINY, n_types=5)
    config = ood.OODConfig(models=("mean_shift",), synthetic=synthetic, n_top_genes=45,
                           seeds=(1,), figures=False, ceiling_repeats=2)
    results = ood.run(config, tmp_path)
    adata = make_perturbation_data(synthetic)
    predicted, real = {}, {}
    for context in sorted(adata.obs["cell_type"].unique()):
        saved = sc.read_h5ad(tmp_path / "predictions" / "mean_shift" / f"{context}.h5ad")
        split = hold_out(adata[:, saved.var_names], config.spec, context)
        control = np.asarray(split.control.X).mean(axis=0)
        predicted[context] = pd.Series(saved.X.mean(axis=0) - control, saved.var_names)
        real[context] = pd.Series(np.asarray(split.truth.X).mean(axis=0) - control,
                                  saved.var_names)
    common = sorted(set.intersection(*(set(p.index) for p in predicted.values())))
    assert 0 < len(common) < 45  # the contexts' genes do differ
    expected = leave_one_context_out({c: p[common].to_numpy() for c, p in predicted.items()},
                                     {c: r[common].to_numpy() for c, r in real.items()})
    coverage = pd.read_csv(tmp_path / "coverage.csv").query("model == 'mean_shift'")
    assert set(coverage["calibration_contexts"]) == {4}
    np.testing.assert_allclose(coverage[["coverage", "mean_width"]].to_numpy(np.float64),
                               expected[["coverage", "mean_width"]].to_numpy(np.float64),
                               rtol=1e-5)
    assert set(results.coverage["model"]) == set(floor_references())
    assert "## Conformal intervals of the mean response" in results.summary
    assert "needs K ≥ [9]" in results.summary  # 4 calibration contexts: no finite 90% interval


@dataclasses.dataclass
class ShiftPeer:
    """A peer's runner: the held-out control cells plus a fixed shift of the first gene."""

    calls: list = dataclasses.field(default_factory=list)

    def __call__(self, train, control, spec, conditions, seeds):
        self.calls.append(control.obs[spec.context_key].iloc[0])
        shifted = np.asarray(control.X, np.float32).copy()
        shifted[:, 0] += 1.0
        return ({c: [shifted + s for s in range(len(seeds))] for c in conditions},
                {c: [{"seed": s} for s in seeds] for c in conditions})


def test_a_peer_model_is_scored_as_a_cell_of_the_table_and_read_back(tmp_path):
    peer = ShiftPeer()
    register_model(PeerModel("peer", peer, {"shift": 1.0}))
    try:
        config = dataclasses.replace(TINY_STUDY, models=("peer",), figures=False)
        results = ood.run(config, tmp_path)
        rows = results.metrics.query("model == 'peer'")
        assert rows["seed"].tolist() == [1, 2] and peer.calls == ["type_0"]
        assert json.loads((tmp_path / "run.json").read_text())["cells"]["peer"][
            "schedule"] == {"shift": 1.0}
        again = ood.run(config, tmp_path)
    finally:
        unregister_model("peer")
    assert peer.calls == ["type_0"]  # read back, not predicted again
    pd.testing.assert_frame_equal(again.metrics.drop(columns=["scoring_seconds"]),
                                  results.metrics.drop(columns=["scoring_seconds"]),
                                  check_exact=True)
    with pytest.raises(ValueError, match=r"unknown models \['peer'\]"):
        ood.run(config, tmp_path / "other")  # without its predictor the name is unknown


def test_unknown_model_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown models \\['not_a_model'\\]"):
        ood.run(dataclasses.replace(TINY_STUDY, models=("not_a_model",)), tmp_path)


def test_nearest_seen_dose_is_nearest_on_the_log_dose_scale():
    assert ood.nearest_seen_condition("1", ["0.3", "3", "10"]) == "0.3"
    assert ood.nearest_seen_condition("5", ["0.3", "3", "10"]) == "3"
    with pytest.raises(ValueError, match="numeric dose labels"):
        ood.nearest_seen_condition("stimulated", ["LPS6"])


def test_dose_never_seen_is_scored_apart_with_its_nearest_seen_dose(tmp_path):
    config = ood.OODConfig(
        design="multidose", held_out=("type_1",), models=("mtae", "control", "mean_shift"),
        seeds=(1,), epochs=1, checkpoint_every=0, figures=False, conditioning="log_dose",
        held_out_conditions=("1",), ceiling_repeats=2,
        multidose=MultiDoseConfig(n_types=3, n_genes=60, doses=(0.1, 1.0, 10.0), largest=40,
                                      smallest=30, n_response_genes=15, insensitive_types=0))
    results = ood.run(config, tmp_path)
    table = results.metrics
    held = table[table.held_out_condition]
    assert set(held.condition) == {"1"}
    assert set(held.model) == {"mtae", "mtae@nearest",
                               *(f"{m}@nearest" for m in floor_references())}
    assert set(held.loc[held.model.str.endswith("@nearest"), "decoded_as"]) == {"0.1"}
    assert set(table.loc[~table.held_out_condition, "condition"]) == {"0.1", "10"}
    assert not results.ranking.index.str.contains("@").any()  # ranked on seen doses only
    assert "Conditions never seen in training" in results.summary
    with pytest.raises(ValueError, match="held_out_conditions cannot include the control"):
        dataclasses.replace(config, held_out_conditions=("0",))


def _species_study(models, tmp_path):
    config = ood.OODConfig(
        design="species", held_out=("rat",), models=models, seeds=(1,), epochs=1,
        checkpoint_every=0, figures=False, ceiling_repeats=2,
        species_data=SpeciesConfig(n_genes=40, cells_per_group=40, n_response_genes=10))
    results = ood.run(config, tmp_path)
    assert set(results.ranking.index) == {*models, *floor_references()}
    assert set(results.metrics.context) == {"rat"}
    assert set(results.metrics.condition) == {"LPS6"}
    assert results.metrics[["r2_all", "edistance"]].notna().all().all()


def test_alternating_and_paired_variants_train_and_are_ranked_on_the_species_design(tmp_path):
    # The three training paths: alternating steps, OT pairs after pre-training, Gaussian latent.
    _species_study(("mtae_adv", "mtvae_plus_ot", "control"), tmp_path)


@pytest.mark.slow
def test_every_variant_trains_and_is_ranked_on_the_species_design(tmp_path):
    from perturbjax.models import mtae
    _species_study((*mtae.VARIANTS, "control"), tmp_path)


def test_the_headline_weighs_each_context_the_same_and_ends_with_the_ceiling():
    rows = pd.DataFrame({
        "model": ["a", "a", "a", "a", "b"], "context": ["c1", "c1", "c1", "c2", "c1"],
        "condition": "stim", "pearson_delta_top100": [0.1, 0.2, 0.3, 0.8, 0.4],
        "degs_robust": 0.0, "discrimination": 1.0, "edistance": [1.0, 1.0, 1.0, 3.0, 2.0],
        "pearson_delta_top100_ceiling": [0.9, 0.9, 0.9, 0.7, 0.9], "degs_robust_ceiling": 0.5,
        "discrimination_ceiling": 1.0, "edistance_ceiling": 0.0})
    lines = headline_table(rows).splitlines()
    assert lines[0] == ("| model | contexts | pearson_delta_top100 | degs_robust | "
                        "discrimination | E-distance |")
    # a: the mean of c1's 0.2 and c2's 0.8, not of its four rows (0.35)
    assert lines[2:] == ["| a | 2 | 0.500 | 0.000 | 1.000 | 2.000 |",
                         "| b | 1 | 0.400 | 0.000 | 1.000 | 2.000 |",
                         "| replicate ceiling |  | 0.800 | 0.500 | 1.000 | 0.000 |"]
