"""Trivial references every table must include: a learned model that loses to both has
learned nothing."""

from __future__ import annotations

import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import HoldOut, is_control


def predict_control(split: HoldOut, spec: PerturbationSpec, condition: str) -> np.ndarray:
    """The prediction is the held-out context's control cells, unchanged."""
    return np.asarray(split.control.X, dtype=np.float32)


def predict_mean_shift(split: HoldOut, spec: PerturbationSpec, condition: str) -> np.ndarray:
    """x_ctrl + mean(perturbed) - mean(control), both means over the training contexts.

    Only the contexts other than the held-out one enter the means, so the shift is estimated
    where both conditions were observed.
    """
    train = split.train
    other = (train.obs[spec.context_key].astype(str) != split.context).to_numpy()
    perturbed = other & (train.obs[spec.condition_key].astype(str) == condition).to_numpy()
    control = other & is_control(train, spec)
    if not perturbed.any():
        raise ValueError(f"no training cells with condition '{condition}' for the mean shift")
    shift = train.X[perturbed].mean(0) - train.X[control].mean(0)
    return np.asarray(split.control.X + shift, dtype=np.float32)
