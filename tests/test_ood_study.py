import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perturbjax.studies import ood

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
TINY_STUDY = ood.OODConfig(held_out=("type_0",), seeds=(1, 2), epochs=3, synthetic=TINY,
                           checkpoint_every=2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ood")
    return ood.run(TINY_STUDY, workdir), workdir


def test_study_writes_table_summary_figures_checkpoints_and_config(study):
    results, workdir = study
    for name in ("metrics.csv", "summary.md", "ranking.csv", "config.json",
                 "figures/metric_bars.png", "figures/means_type_0_stimulated.png",
                 "figures/pca_type_0_stimulated.png"):
        assert (workdir / name).is_file(), name
    assert any((workdir / "checkpoints" / "mtae" / "type_0").rglob("*"))
    table = pd.read_csv(workdir / "metrics.csv")
    assert set(table["model"]) == {"mtae", "control", "mean_shift"}
    assert table.loc[table.model == "mtae", "seed"].tolist() == [1, 2]
    assert set(table["context"]) == {"type_0"}
    assert "Penalty ranking" in (workdir / "summary.md").read_text()


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


def test_unknown_model_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown models \\['scgen'\\]"):
        ood.run(dataclasses.replace(TINY_STUDY, models=("scgen",)), tmp_path)


def test_launcher_runs_the_study_from_flags(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "ood_benchmark.py"), "--workdir",
         str(tmp_path), "--held_out", "type_0", "--epochs", "2", "--seeds", "1",
         "--figures=false", "--models", "mtae,control", "--checkpoint_every", "0"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Penalty ranking" in out.stdout
    assert "epoch 2/2" in out.stderr
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 2
