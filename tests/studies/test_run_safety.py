"""No silent wrong results: OOD runs tied to their data and settings, every input problem
found before training and listed together (every study's settings too), readable launcher
errors, and nothing half-done on failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perturbjax.cli import parse_seeds
from perturbjax.errors import PerturbjaxError, RunValidationError
from perturbjax.studies import ood
from perturbjax.studies.drug_response import DrugStudyConfig
from perturbjax.studies.ood import protocol
from perturbjax.studies.perturbx import PerturbXStudyConfig
from perturbjax.studies.run_record import (
    RUN_FILE,
    WorkdirBusyError,
    WorkdirMismatchError,
    hold_workdir,
)
from perturbjax.studies.signatures import SignatureStudyConfig

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "experiments" / "ood_benchmark.py"


@pytest.fixture()
def h5ad(tiny_adata, tmp_path):
    """Write a (modified) copy of the tiny data set; returns its path."""

    def write(name: str = "a.h5ad", keep=None, change=None) -> Path:
        adata = tiny_adata.copy() if keep is None else tiny_adata[keep].copy()
        del adata.uns["truth"]
        if change is not None:
            change(adata)
        path = tmp_path / name
        adata.write_h5ad(path)
        return path

    return write


def _config(path: Path, **overrides) -> ood.OODConfig:
    # A run's files do not depend on how its models select their epoch: the cheaper
    # 'reconstruction' selection (one member per seed and rate) stands for every configuration.
    settings = {"data": str(path), "held_out": ("type_0",), "models": ("mtae", "control"),
                "seeds": (1,), "epochs": 2, "checkpoint_every": 1, "figures": False,
                "ceiling_repeats": 2, "configuration": "reconstruction"}
    return ood.OODConfig(**(settings | overrides))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_on_changed_data_of_the_same_shape_is_refused_before_any_file_changes(
        h5ad, tmp_path):
    first, second = h5ad("a.h5ad"), h5ad("b.h5ad", change=lambda a: a.X.__setitem__(
        (slice(None), 0), 0.0))
    workdir = tmp_path / "run"
    ood.run(_config(first), workdir)
    before = _snapshot(workdir)
    with pytest.raises(WorkdirMismatchError, match=r"data: \w+ -> \w+.*nothing was changed"):
        ood.run(_config(second), workdir)
    assert _snapshot(workdir) == before
    ood.run(_config(second), workdir, overwrite=True)  # replaced on request
    assert json.loads((workdir / RUN_FILE).read_text())["status"] == "complete"


def test_other_epochs_or_schedules_on_a_finished_workdir_are_refused(h5ad, tmp_path,
                                                                     monkeypatch):
    path, workdir = h5ad(), tmp_path / "run"
    ood.run(_config(path), workdir)
    config_json = (workdir / "config.json").read_text()
    with pytest.raises(WorkdirMismatchError, match=r"model 'mtae' now resolves to another "
                                                   r"schedule \(train.epochs: 2 -> 3"):
        ood.run(_config(path, epochs=3), workdir)
    assert (workdir / "config.json").read_text() == config_json
    # the same run again reads its cells back and agrees with itself
    again = ood.run(_config(path), workdir)
    assert (again.metrics["epochs_run"].dropna() == 2).all()
    # a model whose schedule now resolves differently (a new version) is refused by name
    schedules = protocol.model_schedules

    def other_patience(config):
        changed = schedules(config)
        changed["mtae"]["train"]["patience"] = 1
        return changed

    monkeypatch.setattr(protocol, "model_schedules", other_patience)
    with pytest.raises(WorkdirMismatchError, match=r"model 'mtae' now resolves to another "
                                                   r"schedule \(train.patience"):
        ood.run(_config(path), workdir)


def test_a_training_pool_without_perturbed_cells_is_refused(h5ad, tiny_adata):
    only_type_0 = h5ad(keep=(tiny_adata.obs["cell_type"] == "type_0").to_numpy())
    with pytest.raises(RunValidationError, match="training pool has no cell of condition "
                                                 "'stimulated'"):
        ood.run(_config(only_type_0), only_type_0.parent / "run")
    assert not (only_type_0.parent / "run").exists()


def test_counts_that_are_not_integers_are_refused(h5ad, tmp_path):
    with pytest.raises(RunValidationError, match=r"counts=True .* not non-negative integers"):
        ood.run(_config(h5ad(), counts=True), tmp_path / "run")


def test_raw_counts_or_outsized_values_without_counts_are_refused(h5ad, tmp_path):
    def to_counts(adata):
        adata.X = adata.layers["counts"].astype(np.float32)

    with pytest.raises(RunValidationError, match=r"raw counts.*pass counts=True"):
        ood.run(_config(h5ad("counts.h5ad", change=to_counts)), tmp_path / "run")

    def scaled(adata):
        adata.X = adata.X * 1e6

    with pytest.raises(RunValidationError, match=r"values up to .* stays below 20"):
        ood.run(_config(h5ad("scaled.h5ad", change=scaled)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_problem_is_listed_in_one_message_before_any_training(h5ad, tiny_adata,
                                                                    tmp_path):
    obs = tiny_adata.obs
    keep = ~((obs["cell_type"] == "type_1") & (obs["condition"] == "stimulated")).to_numpy()
    keep &= ~((obs["cell_type"] == "type_2") & (obs["condition"] == "control")).to_numpy()
    keep[np.flatnonzero(((obs["cell_type"] == "type_2") & (obs["condition"] == "control"))
                        .to_numpy())[0]] = True  # type_2 keeps one control cell
    path = h5ad(keep=keep)
    config = _config(path, held_out=(), counts=True)  # every context held out
    with pytest.raises(RunValidationError) as caught:
        ood.run(config, tmp_path / "run")
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert "not non-negative integers" in problems[0]
    assert "'type_1'" in problems[1] and "no perturbed cells" in problems[1]
    assert "'type_2'" in problems[2] and "1 control cell(s)" in problems[2]
    assert str(caught.value).count("\n  - ") == 3
    assert not (tmp_path / "run").exists()


def test_a_training_pool_smaller_than_one_batch_is_refused(h5ad, tiny_adata, tmp_path):
    rows = np.concatenate([np.flatnonzero(((tiny_adata.obs["cell_type"] == t)
                                           & (tiny_adata.obs["condition"] == c)).to_numpy())[:3]
                           for t in ("type_0", "type_1") for c in ("control", "stimulated")])
    keep = np.zeros(tiny_adata.n_obs, bool)
    keep[rows] = True
    with pytest.raises(RunValidationError, match=r"model 'mtae' would train on \d+ cells "
                                                 r"after its validation split, fewer than one "
                                                 r"batch"):
        ood.run(_config(h5ad(keep=keep)), tmp_path / "run")


@pytest.mark.parametrize("overrides, message", [
    ({"seeds": (1, 1)}, r"seeds: \[1\] given more than once"),
    ({"seeds": ()}, "seeds: none given"),
    ({"n_top_genes": 0}, "n_top_genes: 0"),
    ({"epochs": 0}, "epochs: 0"),
])
def test_bad_settings_are_refused_before_the_data_is_read(overrides, message, tmp_path):
    config = _config(tmp_path / "absent.h5ad", **overrides)
    with pytest.raises(RunValidationError, match=message):
        ood.run(config, tmp_path / "run")


def test_a_workdir_that_is_a_file_is_refused(h5ad, tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(RunValidationError, match="is a file; expected a folder"):
        ood.run(_config(h5ad()), tmp_path / "run")


def test_a_run_stopped_midway_keeps_its_done_contexts_marked_partial(h5ad, tmp_path,
                                                                    monkeypatch):
    new_cell = protocol._new_cell

    def fails_on_type_1(model, truth, *args):
        if truth.split.context == "type_1":
            raise KeyboardInterrupt
        return new_cell(model, truth, *args)

    monkeypatch.setattr(protocol, "_new_cell", fails_on_type_1)
    workdir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        ood.run(_config(h5ad(), held_out=("type_0", "type_1", "type_2")), workdir)
    record = json.loads((workdir / RUN_FILE).read_text())
    assert (record["status"], record["done"], record["missing"]) == (
        "partial", ["type_0"], ["type_1", "type_2"])
    assert set(pd.read_csv(workdir / "metrics.csv")["context"]) == {"type_0"}
    assert "contexts ['type_1', 'type_2'] are missing" in (workdir / "summary.md").read_text()


def test_a_run_killed_in_its_first_context_resumes_on_the_same_command(h5ad, tmp_path,
                                                                       monkeypatch):
    path, workdir = h5ad(), tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "_new_cell", lambda *args: (_ for _ in ()).throw(
            KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            ood.run(_config(path), workdir)
    assert json.loads((workdir / RUN_FILE).read_text())["missing"] == ["type_0"]
    ood.run(_config(path), workdir)  # not refused: the record says it is the same run
    assert json.loads((workdir / RUN_FILE).read_text())["status"] == "complete"


@pytest.mark.parametrize("make, count", [
    (lambda: SignatureStudyConfig(cv=1, n_genes=0, experiments=("nope",)), 3),
    (lambda: PerturbXStudyConfig(epochs=0, seeds=(1, 1)), 2),
    (lambda: DrugStudyConfig(folds=1, final_seeds=(), grid="nope"), 3),
])
def test_study_configurations_list_every_bad_setting_at_once(make, count):
    with pytest.raises(RunValidationError) as caught:
        make()
    assert len(caught.value.problems) == count, caught.value.problems


def test_seed_flags_must_be_distinct_integers():
    assert parse_seeds(["3", "1"]) == (3, 1)
    for values, message in (([], "--seeds: none given"), (["abc"], "'abc' is not an integer"),
                            (["1", "1"], r"\[1\] given more than once")):
        with pytest.raises(PerturbjaxError, match=message):
            parse_seeds(values)


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def test_the_launcher_prints_input_errors_in_a_line_and_exits_2(h5ad, tiny_adata, tmp_path):
    two_cells = h5ad(keep=~((tiny_adata.obs["cell_type"] == "type_0").to_numpy())
                     | (np.arange(tiny_adata.n_obs) % 40 == 0))  # type_0: 1 control, 1 stim.
    out = _launch("--data", str(two_cells), "--held_out", "type_0", "--seeds", "1",
                  "--workdir", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "ood_benchmark.py: error: data" in out.stderr
    assert "'type_0'" in out.stderr and "1 control cell(s)" in out.stderr
    verbose = _launch("--seeds", "abc", "--verbose", "--workdir", str(tmp_path / "run"))
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
    assert "'abc' is not an integer seed" in verbose.stderr


def _deterministic(metrics: pd.DataFrame) -> pd.DataFrame:
    """The table without its timings, in a fixed row order."""
    timings = [c for c in metrics.columns if c.endswith("_seconds")]
    return (metrics.drop(columns=timings).sort_values(["context", "model", "seed"])
            .reset_index(drop=True))


def test_a_stopped_table_continues_from_its_last_finished_cell(h5ad, tmp_path, monkeypatch):
    config = _config(h5ad(), held_out=("type_0", "type_1"), models=("linear",))
    new_cell, trained = protocol._new_cell, []

    def stops_at_type_1_linear(model, truth, *args):
        if (model, truth.split.context) == ("linear", "type_1"):
            raise KeyboardInterrupt
        trained.append((model, truth.split.context))
        return new_cell(model, truth, *args)

    workdir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "_new_cell", stops_at_type_1_linear)
        with pytest.raises(KeyboardInterrupt):
            ood.run(config, workdir)
    assert ("control", "type_1") in trained  # the cells before the stop are kept ...
    shutil.rmtree(workdir / "predictions")  # (a committed table keeps only its responses)
    trained.clear()
    monkeypatch.setattr(protocol, "_new_cell", lambda model, truth, *args: (
        trained.append((model, truth.split.context)), new_cell(model, truth, *args))[1])
    resumed = ood.run(config, workdir)
    assert trained == [("linear", "type_1")]  # ... and only the stopped one is run again
    scratch = ood.run(config, tmp_path / "scratch")
    pd.testing.assert_frame_equal(_deterministic(resumed.metrics),
                                  _deterministic(scratch.metrics), check_exact=True)
    pd.testing.assert_frame_equal(resumed.coverage, scratch.coverage, check_exact=True)


def test_a_table_grows_by_models_and_contexts_run_apart(h5ad, tmp_path):
    path, workdir = h5ad(), tmp_path / "run"
    ood.run(_config(path, models=("linear",), held_out=("type_0",)), workdir)
    ood.run(_config(path, models=("control",), held_out=("type_1",)), workdir)
    assert ("Models not scored on every context**: linear (missing ['type_1'])"
            in (workdir / "summary.md").read_text())
    grown = ood.run(_config(path, models=("linear",), held_out=("type_1",)), workdir)
    together = ood.run(_config(path, models=("linear",), held_out=("type_0", "type_1")),
                       tmp_path / "together")
    pd.testing.assert_frame_equal(_deterministic(grown.metrics),
                                  _deterministic(together.metrics), check_exact=True)
    record = json.loads((workdir / RUN_FILE).read_text())
    assert record["cells"]["linear"]["contexts"] == ["type_0", "type_1"]
    assert "not scored on every context" not in (workdir / "summary.md").read_text()


def test_contexts_trained_as_one_program_score_as_the_per_context_loop(h5ad, tiny_adata,
                                                                      tmp_path):
    # type_1 loses a third of its stimulated cells, so the two training pools differ in
    # size and the folds are padded. Rounding differs (tolerances of tests/train); the
    # schedule, the references and the table's shape do not. One program needs selection
    # on the validation split ('reconstruction'): the default's inner folds are refused.
    obs = tiny_adata.obs
    thinned = ((obs["cell_type"] == "type_1") & (obs["condition"] == "stimulated")).to_numpy()
    path = h5ad(keep=~(thinned & (np.arange(len(obs)) % 3 == 0)))
    both = {"held_out": ("type_0", "type_1")}
    with pytest.raises(RunValidationError, match="selects on inner held-out contexts"):
        ood.run(_config(path, **both, one_program=True, configuration="default"),
                tmp_path / "no")
    loop = ood.run(_config(path, **both), tmp_path / "loop").metrics
    one = ood.run(_config(path, **both, one_program=True), tmp_path / "one").metrics
    keys = ["model", "context", "condition", "seed"]
    loop, one = (_deterministic(t).sort_values(keys, ignore_index=True) for t in (loop, one))
    pd.testing.assert_frame_equal(loop[keys], one[keys])
    pd.testing.assert_frame_equal(one[["epochs_run", "best_epoch"]],
                                  loop[["epochs_run", "best_epoch"]])
    learned = (loop["model"] == "mtae").to_numpy()
    assert learned.sum() == 2
    scores = ["pearson_delta", "pearson_delta_top100", "r2_top100", "mse_means"]
    np.testing.assert_allclose(one.loc[learned, scores], loop.loc[learned, scores],
                               rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(one.loc[~learned, scores], loop.loc[~learned, scores])


def test_tables_filled_apart_merge_into_the_table_run_together(h5ad, tmp_path):
    path = h5ad()
    both = ("type_0", "type_1")
    ood.run(_config(path, models=("linear",), held_out=both), tmp_path / "a")
    ood.run(_config(path, models=("mean_shift",), held_out=both), tmp_path / "b")
    table = tmp_path / "b" / "metrics.csv"  # b's references, as another CPU rounds them
    rows = pd.read_csv(table, float_precision="round_trip")
    rows.loc[rows["model"] == "control", "mse_means"] *= 1 + 1e-9
    rows.to_csv(table, index=False)
    merged = ood.run(_config(path, models=("linear", "mean_shift"), held_out=both),
                     tmp_path / "merged", merge_from=[tmp_path / "a", tmp_path / "b"])
    together = ood.run(_config(path, models=("linear", "mean_shift"), held_out=both),
                       tmp_path / "together")
    pd.testing.assert_frame_equal(_deterministic(merged.metrics),
                                  _deterministic(together.metrics), check_exact=True)
    # the merged cells were read back, not run again: their timings are the sources'
    part = pd.read_csv(tmp_path / "a" / "metrics.csv", float_precision="round_trip")
    mine = merged.metrics.set_index(["model", "context"]).loc[("linear", "type_1")]
    assert mine["scoring_seconds"] == part.set_index(["model", "context"]).loc[
        ("linear", "type_1"), "scoring_seconds"]


def test_a_merge_of_another_table_or_of_other_scores_is_refused_untouched_unless_by_model(
        h5ad, tmp_path):
    path = h5ad()
    target, tampered = tmp_path / "target", tmp_path / "tampered"
    ood.run(_config(path, models=("mean_shift",)), target)
    ood.run(_config(path, models=("mean_shift",), seeds=(2,)), tmp_path / "other_seeds")
    ood.run(_config(path, models=("linear",)), tampered)
    table = tampered / "metrics.csv"  # its references, as another machine might round them
    rows = pd.read_csv(table, float_precision="round_trip")
    rows.loc[rows["model"] == "control", "degs_robust"] += 1e-3  # beyond rounding
    rows.to_csv(table, index=False)
    before = _snapshot(target)
    with pytest.raises(WorkdirMismatchError, match=r"another table \(config.seeds"):
        ood.run(_config(path, models=("linear",)), target,
                merge_from=[tmp_path / "other_seeds"])
    with pytest.raises(WorkdirMismatchError, match=r"cell \(control, type_0\) scores otherwise"):
        ood.run(_config(path, models=("linear",)), target, merge_from=[tampered])
    assert _snapshot(target) == before
    # By model: linear's cell is brought (its timing is the source's: read back, not run
    # again); the tampered control cell is neither brought nor compared.
    merged = ood.run(_config(path, models=("linear",)), target, merge_from=[tampered],
                     merge_models=("linear",)).metrics.set_index("model")
    theirs = rows.set_index("model")
    assert merged.loc["linear", "scoring_seconds"] == theirs.loc["linear", "scoring_seconds"]
    assert merged.loc["control", "degs_robust"] == pytest.approx(
        theirs.loc["control", "degs_robust"] - 1e-3, abs=1e-12)


def test_a_run_in_a_workdir_another_run_holds_is_refused_untouched_but_it_may_merge_from_it(
        h5ad, tmp_path):
    path = h5ad()
    target, source = tmp_path / "target", tmp_path / "source"
    ood.run(_config(path, models=("linear",)), target)
    ood.run(_config(path, models=("mean_shift",)), source)
    before = _snapshot(target)
    both = _config(path, models=("linear", "mean_shift"))
    with hold_workdir(target):  # a second open of the lock file, as another process has
        with pytest.raises(WorkdirBusyError, match="target is in use by a run"):
            ood.run(both, target, merge_from=[source])
    assert _snapshot(target) == before
    with hold_workdir(source):  # its finished cells can be read while it runs
        merged = ood.run(both, target, merge_from=[source])
    assert {"linear", "mean_shift"} <= set(merged.metrics["model"])


def test_a_run_killed_while_writing_its_final_files_stays_partial(h5ad, tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(protocol, "summarise", killed)
        with pytest.raises(KeyboardInterrupt):
            ood.run(_config(h5ad(), models=("control",)), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "partial" and record["pending"] == "the table's final files"
    assert not (tmp_path / "run" / "summary.md").exists()
    ood.run(_config(h5ad(), models=("control",)), tmp_path / "run")  # the same command ends it
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and "pending" not in record
    assert (tmp_path / "run" / "summary.md").is_file()


def test_one_table_holds_models_of_several_configurations(h5ad, tmp_path):
    path, workdir = h5ad(), tmp_path / "run"
    ood.run(_config(path, models=("control",), configuration="reconstruction"), workdir)
    record = json.loads((workdir / "run.json").read_text())
    assert "configuration" not in record["fingerprint"]["config"]  # each cell records its own
    # a record of the older form (configuration and epochs in the fingerprint) reads the same
    record["fingerprint"]["config"].update(configuration="default", epochs=2)
    (workdir / "run.json").write_text(json.dumps(record))
    results = ood.run(_config(path, models=("control", "linear"), configuration="default"),
                      workdir)
    assert set(results.metrics["model"]) >= {"control", "linear"}
    assert set(results.metrics.loc[results.metrics["model"] == "linear", "configuration"]) == {
        "reference"}


def test_a_held_out_condition_that_is_not_a_dose_is_refused_before_anything_is_written(
        h5ad, tmp_path):
    with pytest.raises(RunValidationError, match=r"(?s)'stimulated' is not a dose.*leave no "
                                                 r"perturbed condition"):
        ood.run(_config(h5ad(), held_out_conditions=("stimulated",)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_data_with_too_few_genes_for_the_metrics_is_refused(h5ad, tmp_path):
    def one_gene(adata):
        adata._inplace_subset_var(adata.var_names[:1])

    with pytest.raises(RunValidationError, match=r"X has 1 gene\(s\); the response metrics"):
        ood.run(_config(h5ad(change=one_gene)), tmp_path / "run")
