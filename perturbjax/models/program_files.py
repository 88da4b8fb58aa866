"""A learned family's trained programs on disk, in the folders `part_<i>` of a saved model.

Each folder holds one program: its parameters (orbax), the cells it trained on (scGen and
scVIDR predict from them) and its loss history; the entries describing them go into the
saved model's description (`model_files`). Names come from indices, never from data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import orbax.checkpoint as ocp

from perturbjax.data.schema import PerturbationSpec
from perturbjax.errors import PerturbjaxError
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.train import FitResult

HISTORY_FILE = "history.npz"
# (condition or None for every condition, members, training pool, wall seconds)
Program = tuple[str | None, FitResult, TrainingPool, float]


def save_programs(path: Path, programs: Sequence[Program]) -> list[dict[str, Any]]:
    """Write each program under `path/part_<i>`; the entries that describe them."""
    entries = []
    for i, (condition, result, pool, seconds) in enumerate(programs):
        folder = path / f"part_{i}"
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(folder / "state", {"params": result.params,
                                             "model_state": result.model_state})
        checkpointer.wait_until_finished()
        pool.cells.write_h5ad(folder / "training_cells.h5ad")
        np.savez(folder / HISTORY_FILE, train_loss=np.asarray(result.train_loss),
                 val_loss=np.asarray(result.val_loss))
        entries.append({"condition": condition, "folder": folder.name,
                        "labels": list(pool.encoding.labels), "seeds": list(result.seeds),
                        "epochs_run": result.epochs_run,
                        "best_epoch": np.asarray(result.best_epoch).tolist(),
                        "learning_rate": np.asarray(result.learning_rate).tolist(),
                        "n_folds": result.n_folds, "select_together": result.select_together,
                        "seconds": seconds})
    return entries


def load_programs(path: Path, entries: list[dict[str, Any]], spec: PerturbationSpec,
                  control: str) -> list[Program]:
    """The programs `save_programs` wrote under `path` (a model saved before the history
    was kept loads with an empty one)."""
    programs = []
    for i, entry in enumerate(entries):
        folder = path / f"part_{i}"
        if entry["folder"] != folder.name:
            raise PerturbjaxError(f"{path}: part {i} is in folder '{entry['folder']}'; "
                                  f"expected '{folder.name}'")
        cells = ad.read_h5ad(folder / "training_cells.h5ad")
        pool = TrainingPool(cells, spec, ConditionEncoding(tuple(entry["labels"]), control))
        state = ocp.StandardCheckpointer().restore(folder / "state")
        history = {"train_loss": np.zeros((0, 0)), "val_loss": np.zeros((0, 0))}
        if (folder / HISTORY_FILE).is_file():
            with np.load(folder / HISTORY_FILE) as saved:
                history = {k: saved[k] for k in history}
        result = FitResult(seeds=tuple(entry["seeds"]), params=state["params"],
                           model_state=state["model_state"],
                           learning_rate=np.asarray(entry["learning_rate"]),
                           best_epoch=np.asarray(entry["best_epoch"]),
                           epochs_run=entry["epochs_run"], **history,
                           n_folds=entry.get("n_folds", 1),
                           select_together=entry.get("select_together", False))
        programs.append((entry["condition"], result, pool, entry["seconds"]))
    return programs
