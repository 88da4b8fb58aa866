"""From AnnData to a trained ensemble and back: condition codes, device batches, predictions.

Every learned model goes through these functions, so all of them see the same training pool,
the same validation split and predict from the same control matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import jax.numpy as jnp
import numpy as np
import pandas as pd

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import stratified_validation_mask
from perturbjax.train.loop import FitResult, TrainConfig, fit, predict_members
from perturbjax.train.objective import Batch, Objective


@dataclasses.dataclass(frozen=True)
class ConditionEncoding:
    """Sorted condition labels, control included; a cell's code is its label's position."""

    labels: tuple[str, ...]

    @classmethod
    def from_adata(cls, adata: ad.AnnData, spec: PerturbationSpec) -> ConditionEncoding:
        return cls(tuple(sorted(adata.obs[spec.condition_key].astype(str).unique())))

    def code(self, label: str) -> int:
        if label not in self.labels:
            raise KeyError(f"condition '{label}' is not among the encoded {list(self.labels)}")
        return self.labels.index(label)

    def codes(self, adata: ad.AnnData, spec: PerturbationSpec) -> np.ndarray:
        values = adata.obs[spec.condition_key].astype(str)
        codes = pd.Categorical(values, categories=self.labels).codes
        if (codes < 0).any():
            self.code(values[codes < 0].iloc[0])  # raises, naming the unknown condition
        return codes.astype(np.int32)


def batch_of(adata: ad.AnnData, codes: np.ndarray) -> Batch:
    """Device arrays of expression and condition codes."""
    return {"x": jnp.asarray(np.asarray(adata.X, np.float32)),
            "condition": jnp.asarray(codes, jnp.int32)}


def fit_on_anndata(objective: Objective, train_config: TrainConfig, train: ad.AnnData,
                   spec: PerturbationSpec, encoding: ConditionEncoding, seeds: Sequence[int],
                   workdir: str | Path | None = None, validation_seed: int = 0,
                   fingerprint: dict | None = None) -> FitResult:
    """Train on `train` minus a stratified validation split (same split for every seed)."""
    codes = encoding.codes(train, spec)
    val = stratified_validation_mask(train, spec, train_config.validation_fraction,
                                     validation_seed)
    return fit(objective, batch_of(train[~val], codes[~val]), batch_of(train[val], codes[val]),
               seeds, train_config, workdir=workdir, fingerprint=fingerprint)


def predict_anndata(objective: Objective, result: FitResult, control: ad.AnnData,
                    spec: PerturbationSpec, encoding: ConditionEncoding,
                    condition: str) -> list[ad.AnnData]:
    """One AnnData per seed: the control cells decoded under `condition`, obs kept
    (with the condition column set to the predicted condition)."""
    target = np.full(control.n_obs, encoding.code(condition), np.int32)
    values = predict_members(objective, result, batch_of(control, target))
    out = []
    for seed, x in zip(result.seeds, values, strict=True):
        obs = control.obs.copy()
        obs[spec.condition_key] = condition
        pred = ad.AnnData(np.asarray(x, np.float32), obs=obs, var=control.var.copy())
        pred.uns["seed"] = seed
        out.append(pred)
    return out
