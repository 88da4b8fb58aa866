"""Models by name: learned families (each with named configurations) and references."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import HoldOut
from perturbjax.models import mtae, scbutterfly, scgen, scpregan, scvidr
from perturbjax.models.fitting import ConditionEncoding, predict_decoded
from perturbjax.models.references import (
    predict_control,
    predict_linear,
    predict_mean_shift,
    predict_mean_shift_balanced,
)
from perturbjax.train.loop import FitResult, TrainConfig
from perturbjax.train.objective import Objective

PAIRINGS = ("none", "ot", "plus_ot", "unpaired")

# (objective, trained members, the held-out task, schema, condition codes, condition) ->
# one (control cells x genes) prediction per member.
Predictor = Callable[[Objective, FitResult, HoldOut, PerturbationSpec, ConditionEncoding, str],
                     list[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A learned model: named (architecture, training) configurations, a builder
    `build(config, n_genes, condition labels, control label, n_train, n_contexts)`, and
    what it trains on: "none" (each cell reconstructs itself), "ot" (optimal-transport
    pairs), "plus_ot" (the former, then fine-tuned on the latter) or "unpaired" (rows of one
    control and one perturbed cell drawn independently: two unpaired domains).

    `predict` turns the trained members into predictions (default: decode the control cells
    under the condition). `per_condition` marks a single-perturbation model: on data with
    several perturbed conditions (doses) it is trained once per condition, on the control
    cells and that condition's cells only. `doses_only` marks a model whose condition labels
    must be doses (the multi-dose design). `self_pairs` False trains a paired model on the
    control -> perturbed pairs only (no control -> itself rows).
    """

    name: str
    configs: dict[str, tuple[Any, TrainConfig]]
    build: Callable[..., Objective]
    pairing: str = "none"
    predict: Predictor = predict_decoded
    per_condition: bool = False
    doses_only: bool = False
    self_pairs: bool = True

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"model '{self.name}': pairing must be one of {PAIRINGS}")

    def config(self, name: str) -> tuple[Any, TrainConfig]:
        if name not in self.configs:
            raise KeyError(f"model '{self.name}' has no configuration '{name}' "
                           f"(available: {sorted(self.configs)})")
        return self.configs[name]


Reference = Callable[[HoldOut, PerturbationSpec, str], np.ndarray]

MULTI_TASK: dict[str, ModelFamily] = {
    name: ModelFamily(name, configs, mtae.build, pairing)
    for name, (configs, pairing) in mtae.VARIANTS.items()
}
BASELINES: dict[str, ModelFamily] = {
    "scgen": ModelFamily("scgen", scgen.CONFIGS, scgen.build, predict=scgen.predict,
                         per_condition=True),
    "scvidr": ModelFamily("scvidr", scvidr.CONFIGS, scvidr.build,
                          predict=scvidr.predict_single, per_condition=True),
    "scpregan": ModelFamily("scpregan", scpregan.CONFIGS, scpregan.build, pairing="unpaired",
                            per_condition=True),
    "scbutterfly": ModelFamily("scbutterfly", scbutterfly.CONFIGS, scbutterfly.build,
                               pairing="ot", per_condition=True, self_pairs=False),
    "scvidr_multi": ModelFamily("scvidr_multi", scvidr.CONFIGS, scvidr.build,
                                predict=scvidr.predict_multi, doses_only=True),
}
LEARNED: dict[str, ModelFamily] = {**MULTI_TASK, **BASELINES}
REFERENCES: dict[str, Reference] = {
    "control": predict_control,
    "mean_shift": predict_mean_shift,
    "mean_shift_balanced": predict_mean_shift_balanced,
    "linear": predict_linear,
}
MODEL_NAMES = tuple(LEARNED) + tuple(REFERENCES)


def check_model_names(names: tuple[str, ...] | list[str]) -> None:
    """Raise a clear error for any model name that is neither learned nor a reference."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown models {unknown}; available: {list(MODEL_NAMES)}")
