"""Models by name: learned families (each with named configurations) and references."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import HoldOut
from perturbjax.models import mtae, scbutterfly, scgen, scpregan, scvidr
from perturbjax.models.family import Batching, FitSettings, Fitted, ModelFamily
from perturbjax.models.references import (
    predict_control,
    predict_linear,
    predict_mean_shift,
    predict_mean_shift_balanced,
)

Reference = Callable[[HoldOut, PerturbationSpec, str], np.ndarray]

MULTI_TASK: dict[str, ModelFamily] = {
    name: ModelFamily(name, configs, mtae.build, pairing, adjust=mtae.adjust)
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
__all__ = ["BASELINES", "LEARNED", "MODEL_NAMES", "MULTI_TASK", "REFERENCES", "Batching",
           "FitSettings", "Fitted", "ModelFamily", "check_model_names"]


def check_model_names(names: tuple[str, ...] | list[str]) -> None:
    """Raise a clear error for any model name that is neither learned nor a reference."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown models {unknown}; available: {list(MODEL_NAMES)}")
