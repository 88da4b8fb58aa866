"""Every model by name: one interface for learned families, references and outside peers.

A model is an object with the attributes and methods of `Model`; `register_model` makes it
known by its name, and the registry is the only list of model names. The benchmark and the
library API (`perturbjax.fit`) find models here and use them alike: `fit` on a training pool
returns a `Trained` object, whose `predict` decodes control cells under a condition (one
array per member) and whose `runs` report each member's bookkeeping (epochs, seconds).
`trained.TrainedModel` wraps it for users, with the data's schema, saving and intervals.

Adding a model is one file and one registration:

    register_model(ModelFamily("my_model", {"default": (MyConfig(), TrainConfig())}, build))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anndata as ad
import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.models.fitting import TrainingPool
from perturbjax.models.settings import FitSettings

ROLES = ("learned", "reference", "peer")
# The model the main job runs and `perturbjax.fit` trains unless told otherwise: the family's
# flow-matching member (`models.flow`; why, in docs/flow_member.md).
RECOMMENDED = "mtflow"


class Trained(Protocol):
    """A model fitted on one training pool."""

    seeds: tuple[int | None, ...]

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        """`control` (cells x the pool's genes) under `condition`: one array per member."""
        ...

    def runs(self, condition: str) -> list[dict]:
        """Per member: its bookkeeping (`seed`, and for learned models epochs run, best
        epoch, learning rate and `train_seconds`)."""
        ...

    def history(self) -> dict:
        """Per trained program: its training and validation loss per (member, epoch)."""
        ...

    def save(self, path: Path) -> list[dict[str, Any]]:
        """Write itself under `path` in folders named `part_<i>`; the entries describing them
        (read back by the model's `load_trained`)."""
        ...


class Model(Protocol):
    """What every model declares and does.

    `role` is "learned", "reference" or "peer" (trained outside this package); `floor`
    marks the trivial references every calibrated score is measured from. A model with
    `decodes_unseen_conditions` can predict a condition it has no training cells of (a
    continuous dose code); `doses_only` needs dose labels (the multi-dose design).
    """

    name: str
    role: str
    floor: bool
    decodes_unseen_conditions: bool
    doses_only: bool

    def schedule(self, settings: FitSettings) -> dict | None:
        """What its predictions depend on besides the data (None: nothing but the data)."""
        ...

    def describe(self, schedule: dict | None, settings: FitSettings) -> dict[str, str]:
        """The `configuration` name and training `budget` of a recorded schedule, as the
        table's columns state them."""
        ...

    def settings_problems(self, settings: FitSettings, one_program: bool) -> list[str]:
        """Why these settings cannot train it (empty: they can)."""
        ...

    def pool_problems(self, cells: ad.AnnData, spec: PerturbationSpec,
                      conditions: Sequence[str], settings: FitSettings) -> list[str]:
        """Why a training pool of `cells` cannot train it to predict `conditions`."""
        ...

    def fit(self, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
            workdir: Path | None = None, conditions: Sequence[str] | None = None) -> Trained:
        """Fit every seed on `pool` (checkpoints under `workdir` where it keeps any)."""
        ...

    def fit_pools(self, pools: Mapping[str, TrainingPool], seeds: Sequence[int],
                  settings: FitSettings, workdir: Path | None = None,
                  conditions: Sequence[str] | None = None) -> dict[str, Trained]:
        """`fit` on each of several pools of one data set; a learned family trains them as
        one program."""
        ...

    def load_trained(self, path: Path, entries: list[dict[str, Any]], settings: FitSettings,
                     spec: PerturbationSpec, control: str) -> Trained:
        """What `Trained.save` wrote under `path`."""
        ...


class ModelDefaults:
    """What a model without training settings inherits: no settings or pool problems of its
    own, and several pools fitted one at a time."""

    def settings_problems(self, settings: FitSettings, one_program: bool) -> list[str]:
        return []

    def pool_problems(self, cells: ad.AnnData, spec: PerturbationSpec,
                      conditions: Sequence[str], settings: FitSettings) -> list[str]:
        return []

    def fit_pools(self, pools: Mapping[str, TrainingPool], seeds: Sequence[int],
                  settings: FitSettings, workdir: Path | None = None,
                  conditions: Sequence[str] | None = None) -> dict[str, Trained]:
        return {name: self.fit(pool, seeds, settings, conditions=conditions)
                for name, pool in pools.items()}


_REGISTRY: dict[str, Model] = {}


def register_model(model: Model, replace: bool = False) -> Model:
    """Make `model` known by `model.name`; a name taken already is refused unless `replace`."""
    if model.role not in ROLES:
        raise ValueError(f"model '{model.name}': role must be one of {ROLES}, "
                         f"got '{model.role}'")
    if model.name in _REGISTRY and not replace:
        raise ValueError(f"a model named '{model.name}' is registered already")
    if "@" in model.name or not model.name:
        raise ValueError(f"model name '{model.name}': expected a non-empty name without '@'")
    _REGISTRY[model.name] = model
    return model


def unregister_model(name: str) -> None:
    """Forget the model called `name` (a model registered for one run or test)."""
    _REGISTRY.pop(name, None)


def get_model(name: str) -> Model:
    """The model registered as `name`, or an error listing the names."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model '{name}'; available: {list(_REGISTRY)}")
    return _REGISTRY[name]


def model_names(role: str | None = None) -> tuple[str, ...]:
    """The registered names (of one role), in the order they were registered."""
    return tuple(n for n, m in _REGISTRY.items() if role is None or m.role == role)


def floor_references() -> tuple[str, ...]:
    """The references every calibrated score is measured from."""
    return tuple(n for n, m in _REGISTRY.items() if m.floor)


def check_model_names(names: Sequence[str]) -> None:
    """Raise one clear error naming every unknown model."""
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown models {unknown}; available: {list(_REGISTRY)}")
