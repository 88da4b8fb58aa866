"""Untrusted names and folders: names that come from data never become paths unchecked (a
study on contexts named like paths writes every file inside its workdir), and nothing a user
owns is deleted."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbjax.studies import ood
from perturbjax.studies.ood.cells import checkpoint_dir
from perturbjax.studies.ood.protocol import OUTPUTS
from perturbjax.studies.run_record import WorkdirMismatchError, claim_workdir
from tests.conftest import TINY


def test_contexts_named_like_paths_write_only_inside_the_workdir(tiny_adata, tmp_path):
    hostile = {"type_0": "../../escape", "type_1": str(tmp_path / "absolute"),
               "type_2": "x" * 300}
    cells = tiny_adata.copy()
    cells.obs["cell_type"] = cells.obs["cell_type"].astype(str).map(hostile)
    (tmp_path / "data").mkdir()
    cells.write_h5ad(tmp_path / "data" / "cells.h5ad")
    workdir = tmp_path / "deep" / "er" / "run"
    config = ood.OODConfig(data=str(tmp_path / "data" / "cells.h5ad"), synthetic=TINY,
                           held_out=tuple(hostile.values()), models=("control",),
                           seeds=(1,), ceiling_repeats=1, figures=False)
    results = ood.run(config, workdir)
    assert set(results.metrics["context"]) == set(hostile.values())
    outside = [p for p in tmp_path.rglob("*")
               if p.is_file() and not p.is_relative_to(workdir)
               and p != tmp_path / "data" / "cells.h5ad"]
    assert outside == []
    again = ood.run(config, workdir)  # every cell read back by its name
    pd.testing.assert_frame_equal(again.metrics, results.metrics)


def test_checkpoints_of_a_context_named_like_a_path_stay_in_the_workdir(tmp_path):
    for name in ("../../escape", str(tmp_path / "absolute"), "x" * 300):
        folder = checkpoint_dir(tmp_path / "run", "mtae", name)
        assert folder.resolve().parent == (tmp_path / "run" / "checkpoints" / "mtae").resolve()


def test_overwrite_removes_nothing_that_no_run_record_claims(tmp_path):
    workdir = tmp_path / "mine"
    (workdir / "figures").mkdir(parents=True)
    (workdir / "figures" / "my_plot.png").write_bytes(b"a user's figure")
    with pytest.raises(WorkdirMismatchError, match=r"no run.json.*removes only a run's own"):
        claim_workdir(workdir, {"config": 1}, OUTPUTS, overwrite=True)
    assert (workdir / "figures" / "my_plot.png").read_bytes() == b"a user's figure"


def test_a_damaged_run_record_is_refused_by_name(tmp_path):
    (tmp_path / "metrics.csv").write_text("model\n")
    (tmp_path / "run.json").write_text("{\"fingerp")
    with pytest.raises(WorkdirMismatchError, match=r"run.json: not a readable run record"):
        claim_workdir(tmp_path, {"config": 1}, OUTPUTS)
