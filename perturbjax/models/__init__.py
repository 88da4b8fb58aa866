"""Models by name: learned families (each with named configurations) and references."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import HoldOut
from perturbjax.models import mtae
from perturbjax.models.references import predict_control, predict_mean_shift
from perturbjax.train.loop import TrainConfig
from perturbjax.train.objective import Objective

PAIRINGS = ("none", "ot", "plus_ot")


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A learned model: named (architecture, training) configurations, a builder
    `build(config, n_genes, condition labels, control label, n_train)`, and what it trains
    on: "none" (each cell reconstructs itself), "ot" (optimal-transport pairs) or "plus_ot"
    (the former, then fine-tuned on the latter)."""

    name: str
    configs: dict[str, tuple[Any, TrainConfig]]
    build: Callable[..., Objective]
    pairing: str = "none"

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"model '{self.name}': pairing must be one of {PAIRINGS}")

    def config(self, name: str) -> tuple[Any, TrainConfig]:
        if name not in self.configs:
            raise KeyError(f"model '{self.name}' has no configuration '{name}' "
                           f"(available: {sorted(self.configs)})")
        return self.configs[name]


Reference = Callable[[HoldOut, PerturbationSpec, str], np.ndarray]

LEARNED: dict[str, ModelFamily] = {
    name: ModelFamily(name, configs, mtae.build, pairing)
    for name, (configs, pairing) in mtae.VARIANTS.items()
}
REFERENCES: dict[str, Reference] = {
    "control": predict_control,
    "mean_shift": predict_mean_shift,
}
MODEL_NAMES = tuple(LEARNED) + tuple(REFERENCES)


def check_model_names(names: tuple[str, ...] | list[str]) -> None:
    """Raise a clear error for any model name that is neither learned nor a reference."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown models {unknown}; available: {list(MODEL_NAMES)}")
