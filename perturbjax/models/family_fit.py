"""A learned family once fitted: its programs, predictions, history, and their files.

A single-perturbation family holds one trained program per condition, any other family one
program for every condition. `Fitted` is the family's `registry.Trained`; `save` / `load`
write and read its programs under the folders `part_<i>` of a saved model (names never come
from data): parameters with orbax, the training cells (scGen and scVIDR predict from them)
and the loss history.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import orbax.checkpoint as ocp

from perturbjax.data.schema import PerturbationSpec
from perturbjax.errors import PerturbjaxError
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.settings import FitSettings
from perturbjax.train import FitResult
from perturbjax.train.objective import Objective

if TYPE_CHECKING:
    from perturbjax.models.family import ModelFamily

HISTORY_FILE = "history.npz"


@dataclasses.dataclass(frozen=True)
class TrainedProgram:
    """One trained program: its objective, members, the pool it saw and its wall time."""

    objective: Objective
    result: FitResult
    pool: TrainingPool
    seconds: float


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A trained family: `predict` decodes control cells under a condition, one array per
    seed; `runs` is each seed's bookkeeping (epochs run, best epoch, learning rate, seconds)."""

    family: ModelFamily
    parts: dict[str | None, TrainedProgram]  # condition -> its program; None: every condition

    @property
    def seeds(self) -> tuple[int, ...]:
        return next(iter(self.parts.values())).result.seeds

    def _part(self, condition: str) -> TrainedProgram:
        part = self.parts.get(condition, self.parts.get(None))
        if part is None:
            raise PerturbjaxError(f"model '{self.family.name}' was trained for the conditions "
                                  f"{sorted(self.parts)}, not '{condition}'")
        return part

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        part = self._part(condition)
        return self.family.predict(part.objective, part.result, part.pool, control, condition)

    def runs(self, condition: str) -> list[dict]:
        part = self._part(condition)
        # Folds that select together share each seed's epoch and rate: the first tells them.
        result = part.result.fold(0) if part.result.select_together else part.result
        return [{"seed": seed, "epochs_run": result.epochs_run, "best_epoch": int(best) + 1,
                 "learning_rate": float(lr), "train_seconds": part.seconds}
                for seed, best, lr in zip(result.seeds, result.best_epoch, result.learning_rate,
                                          strict=True)]

    def history(self) -> dict[str | None, dict[str, np.ndarray]]:
        """Per program: training and validation loss per (member, epoch)."""
        return {c: {"train_loss": p.result.train_loss, "val_loss": p.result.val_loss}
                for c, p in self.parts.items()}

    def save(self, path: Path) -> list[dict[str, Any]]:
        """Write each program under `path/part_<i>`; the entries that describe them."""
        entries = []
        for i, (condition, part) in enumerate(self.parts.items()):
            folder = path / f"part_{i}"
            checkpointer = ocp.StandardCheckpointer()
            checkpointer.save(folder / "state", {"params": part.result.params,
                                                 "model_state": part.result.model_state})
            checkpointer.wait_until_finished()
            part.pool.cells.write_h5ad(folder / "training_cells.h5ad")
            result = part.result
            np.savez(folder / HISTORY_FILE, train_loss=np.asarray(result.train_loss),
                     val_loss=np.asarray(result.val_loss))
            entries.append({"condition": condition, "folder": folder.name,
                            "labels": list(part.pool.encoding.labels),
                            "seeds": list(result.seeds), "epochs_run": result.epochs_run,
                            "best_epoch": np.asarray(result.best_epoch).tolist(),
                            "learning_rate": np.asarray(result.learning_rate).tolist(),
                            "n_folds": result.n_folds,
                            "select_together": result.select_together,
                            "seconds": part.seconds})
        return entries

    @classmethod
    def load(cls, family: ModelFamily, path: Path, entries: list[dict[str, Any]],
             settings: FitSettings, spec: PerturbationSpec, control: str) -> Fitted:
        """The programs `save` wrote under `path` (a model saved before the history was kept
        loads with an empty one)."""
        model_config, _ = family.configured(settings)
        parts = {}
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
            parts[entry["condition"]] = TrainedProgram(family.build(model_config, pool.task()),
                                                       result, pool, entry["seconds"])
        return cls(family, parts)
