"""An outside peer (a model of another package, in its own environment) behind the interface.

A peer trains and predicts in one call of its own runner (`PeerRunner`): it is given the
training pool, the control cells, the conditions and the seeds, and returns one prediction
per (condition, seed). `PeerModel.fit` keeps what the runner needs; the runner is called on
the first prediction for a set of control cells, for every condition at once. A peer is scored
like any model but not saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anndata as ad
import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.errors import PerturbjaxError
from perturbjax.models.fitting import TrainingPool
from perturbjax.models.registry import ModelDefaults
from perturbjax.models.settings import FitSettings

Predictions = dict[str, list[np.ndarray]]  # condition -> one (cells x genes) array per seed
RunRecords = dict[str, list[dict]]  # condition -> per seed: its bookkeeping (at least `seed`)


class PeerRunner(Protocol):
    """Trains on `train` and predicts `control` under each condition, once per seed."""

    def __call__(self, train: ad.AnnData, control: ad.AnnData, spec: PerturbationSpec,
                 conditions: list[str], seeds: tuple[int, ...]
                 ) -> tuple[Predictions, RunRecords]: ...


def peer_description(schedule: dict) -> dict[str, str]:
    """A peer's configuration and budget, from what its schedule records."""
    iterations = (schedule or {}).get("iterations")
    return {"configuration": "peer",
            "budget": f"{iterations} iterations" if iterations else "its runner's own setting"}


@dataclasses.dataclass
class PeerFit:
    """A peer fitted on a pool: predictions made by its runner, kept per set of control cells."""

    model: PeerModel
    pool: TrainingPool
    seeds: tuple[int, ...]
    conditions: tuple[str, ...]
    _made: dict = dataclasses.field(default_factory=dict)

    def _predictions(self, control: ad.AnnData) -> tuple[Predictions, RunRecords]:
        key = tuple(control.obs_names)
        if key not in self._made:
            self._made = {key: self.model.runner(self.pool.cells, control, self.pool.spec,
                                                 list(self.conditions), self.seeds)}
        return self._made[key]

    def _checked(self, condition: str) -> None:
        if condition not in self.conditions:
            raise PerturbjaxError(f"peer '{self.model.name}' was fitted for the conditions "
                                  f"{list(self.conditions)}, not '{condition}'")

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        self._checked(condition)
        return self._predictions(control)[0][condition]

    def runs(self, condition: str) -> list[dict]:
        self._checked(condition)
        if not self._made:
            raise PerturbjaxError(f"peer '{self.model.name}' reports its runs once it has "
                                  "predicted")
        return next(iter(self._made.values()))[1][condition]

    def history(self) -> dict:
        return {}

    def save(self, path: Path) -> list[dict]:
        raise PerturbjaxError(f"peer '{self.model.name}' runs in its own environment and is "
                              "not saved; fit it again to predict")


@dataclasses.dataclass(frozen=True)
class PeerModel(ModelDefaults):
    """A peer behind the model interface (`registry.Model`); `schedule` is what its
    predictions depend on (e.g. its runner's code and iterations)."""

    name: str
    runner: PeerRunner
    peer_schedule: dict
    role = "peer"
    floor = False
    decodes_unseen_conditions = False
    doses_only = False

    def schedule(self, settings: FitSettings) -> dict:
        return self.peer_schedule

    def describe(self, schedule: dict, settings: FitSettings) -> dict[str, str]:
        return peer_description(schedule)

    def fit(self, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
            workdir: Path | None = None, conditions: Sequence[str] | None = None) -> PeerFit:
        labels = sorted(set(pool.cells.obs[pool.spec.condition_key].astype(str))
                        - {pool.encoding.control})
        return PeerFit(self, pool, tuple(int(s) for s in seeds),
                       tuple(conditions if conditions is not None else labels))

