"""The one trained object: any registered model fitted on a pool, for studies and users alike.

`train_model(name, pool, seeds, settings)` fits the registered model and returns a
`TrainedModel`. The benchmark reads its members (`predict_members`, `runs`); a user calls
`predict`, which checks the cells and returns AnnData: the ensemble mean per cell in `X`, each
seed's prediction in `layers["member_<seed>"]` and the spread across seeds in `layers["std"]`
(the spread is not a calibrated interval). A model may predict values below 0, which
log-normalised expression never holds (a decoded cell, a shifted copy); `predict` says how
many in one line and `clip_negative=True` sets them to 0 before anything reads them. With
`calibration` (residuals of the mean response on contexts each predicted by a fit that did
not see them, `api.fit(calibrate=True)`), `predict` also writes the split-conformal
interval of the mean response in `var`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import jax
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbjax.data.datasets import dense_x
from perturbjax.data.schema import PerturbationSpec, log_normalised_problem, non_count_example
from perturbjax.errors import PerturbjaxError
from perturbjax.metrics.conformal import fewest_contexts, half_widths
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.model_files import write_model
from perturbjax.models.registry import Trained, get_model
from perturbjax.models.settings import FitSettings
from perturbjax.version import __version__

logger = logging.getLogger("perturbjax")


def interval_columns(level: float) -> tuple[str, str]:
    """The `var` columns of the interval at `level`: ('response_lower_90', ...) at 0.9."""
    percent = f"{100 * level:.10g}"
    return f"response_lower_{percent}", f"response_upper_{percent}"


def input_kind(adata: ad.AnnData) -> str:
    """'counts' when X holds only non-negative integers, else 'log-normalised'."""
    return "counts" if non_count_example(adata.X) is None else "log-normalised"


def device_name() -> str:
    """The accelerator the model trained on, e.g. 'cpu' or 'gpu (NVIDIA H100)'."""
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", "")
    return device.platform + (f" ({kind})" if kind and kind.lower() != device.platform else "")


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A fitted model and what it was trained on (see the module docstring)."""

    name: str
    settings: FitSettings
    spec: PerturbationSpec
    genes: tuple[str, ...]
    encoding: ConditionEncoding
    contexts: tuple[str, ...]
    kind: str
    trained: Trained
    # per condition: absolute residuals of the mean response (calibration contexts x genes)
    calibration: dict[str, pd.DataFrame] | None = None
    device: str = dataclasses.field(default_factory=device_name)

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(self.trained.seeds)

    def __repr__(self) -> str:
        conditions = [c for c in self.encoding.labels if c != self.encoding.control]
        calibrated = ("no" if self.calibration is None else
                      f"{max((len(r) for r in self.calibration.values()), default=0)} contexts")
        return (f"TrainedModel('{self.name}', configuration='{self.settings.configuration}', "
                f"seeds={list(self.seeds)}, genes={len(self.genes)}, "
                f"contexts={len(self.contexts)}, conditions={conditions[:5]}"
                f"{'...' if len(conditions) > 5 else ''}, calibrated={calibrated}, "
                f"device='{self.device}')")

    def predict_members(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        """One (cells x genes) prediction per member, unchecked: cells of the training data."""
        return self.trained.predict(control, condition)

    def runs(self, condition: str) -> list[dict]:
        """Per member: its seed, and for learned models epochs, learning rate and seconds."""
        return self.trained.runs(condition)

    def history(self) -> dict:
        """Per trained program: its training and validation loss per (member, epoch)."""
        return self.trained.history()

    def _checked(self, control: ad.AnnData, condition: str, reindex: bool) -> ad.AnnData:
        if control.n_obs == 0:
            raise PerturbjaxError("no cells to predict from: the AnnData given is empty")
        known = [c for c in self.encoding.labels if c != self.encoding.control]
        if condition == self.encoding.control:
            raise PerturbjaxError(f"condition '{condition}' is the control: the model predicts "
                                  f"control cells under a perturbation, one of {known}")
        if condition not in self.encoding.labels:
            raise PerturbjaxError(f"condition '{condition}' is not one the model was trained "
                                  f"on; known conditions: {known}")
        labels = (control.obs[self.spec.condition_key].astype(str)
                  if self.spec.condition_key in control.obs.columns else None)
        if labels is not None and (labels != self.encoding.control).any():
            found = sorted(set(labels) - {self.encoding.control})
            raise PerturbjaxError(
                f"{int((labels != self.encoding.control).sum())} of the cells are labelled "
                f"{found[:3]} in obs '{self.spec.condition_key}', not '{self.encoding.control}': "
                "predict from control cells")
        return self._cells_checked(control, reindex)

    def _cells_checked(self, control: ad.AnnData, reindex: bool) -> ad.AnnData:
        """The cells on the model's genes (by name with `reindex`), of the kind it trained
        on, finite, as a dense float32 X."""
        genes = list(map(str, control.var_names))
        if genes != list(self.genes):
            missing = sorted(set(self.genes) - set(genes))
            extra = sorted(set(genes) - set(self.genes))
            if missing or not reindex:
                raise PerturbjaxError(
                    f"the cells' genes differ from the model's {len(self.genes)}: "
                    f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}"
                    + ("" if missing else "; the same genes in another order or with extras: "
                       "pass reindex=True to select and order them by name"))
            control = control[:, list(self.genes)]
        kind = input_kind(control)
        if kind != self.kind:
            raise PerturbjaxError(f"the cells hold {kind} values but the model was trained on "
                                  f"{self.kind} data; transform them the same way first")
        values = control.X.data if sp.issparse(control.X) else np.asarray(control.X)
        if not np.isfinite(values).all():
            raise PerturbjaxError(f"the cells hold {int((~np.isfinite(values)).sum())} NaN or "
                                  "inf values; expected finite expression values")
        problem = log_normalised_problem(control.X) if self.kind == "log-normalised" else None
        if problem:
            raise PerturbjaxError(f"the cells to predict from: {problem}")
        if not isinstance(control.X, np.ndarray) or control.X.dtype != np.float32:
            control = control.copy()  # a sparse or float64 X, as read from most h5ad files
            control.X = dense_x(control.X)
        return control

    def predict(self, control: ad.AnnData, condition: str | Sequence[str],
                reindex: bool = True, level: float = 0.9, clip_negative: bool = False
                ) -> ad.AnnData:
        """The control cells under `condition` (or under each of several conditions, one
        block of rows per condition): an AnnData (see the module docstring) whose cells are
        named `<control cell>|<condition>`, with the interval of the mean response at
        `level` in `var` when the model is calibrated. Genes are matched by name
        (`reindex`); `clip_negative` sets negative predicted values to 0 (module
        docstring)."""
        if not isinstance(condition, str):
            conditions = [str(c) for c in condition]
            if not conditions:
                raise PerturbjaxError("no condition to predict: pass one or more conditions")
            return _joined([self.predict(control, c, reindex, level, clip_negative)
                            for c in conditions], conditions)
        control = self._checked(control, str(condition), reindex)
        members = np.stack(self.predict_members(control, str(condition))).astype(np.float32)
        negative = float((members < 0).mean())
        if clip_negative:
            members = np.maximum(members, 0.0)
        elif negative > 0:
            logger.warning("%.1f%% of the predicted values under '%s' are negative, which "
                           "log-normalised expression never is; rank tests on them (scanpy's "
                           "DEG test) misread those genes: predict(..., clip_negative=True) "
                           "sets them to 0", 100 * negative, condition)
        obs = control.obs.copy()
        obs[self.spec.condition_key] = str(condition)
        obs["model"] = self.name
        obs["perturbjax_prediction"] = True
        obs.index = [f"{name}|{condition}" for name in control.obs_names]
        pred = ad.AnnData(members.mean(axis=0), obs=obs, var=control.var.copy())
        for seed, values in zip(self.seeds, members, strict=True):
            pred.layers[f"member_{seed}"] = values
        pred.layers["std"] = members.std(axis=0)
        responses = (members.astype(np.float64).mean(axis=1)
                     - np.asarray(control.X, np.float64).mean(axis=0))
        pred.var["predicted_response"] = responses.mean(axis=0)
        pred.var["response_seed_sd_uncalibrated"] = responses.std(axis=0)
        pred.uns["perturbjax"] = {"model": self.name,
                                  "configuration": self.settings.configuration,
                                  "seeds": [s for s in self.seeds if s is not None],
                                  "version": __version__,
                                  "std": "spread of the seeds' predictions, not calibrated",
                                  "negative_share": negative, "clipped": clip_negative,
                                  "interval": self._interval(pred.var, str(condition), level)}
        return pred

    def embed(self, cells: ad.AnnData, reindex: bool = True) -> ad.AnnData:
        """A copy of `cells` with their coordinates in the model's own space in
        `obsm["X_<model>"]` (MTFlow: the compact space its flow lives in, the same for every
        member), for scanpy's neighbours and UMAP; a model without one shared by its members
        says so."""
        if cells.n_obs == 0:
            raise PerturbjaxError("no cells to embed: the AnnData given is empty")
        embed = getattr(self.trained, "embed", None)
        coordinates = embed(self._cells_checked(cells, reindex)) if embed else None
        if coordinates is None:
            raise PerturbjaxError(f"model '{self.name}' has no space shared by its members to "
                                  "embed cells in (MTFlow has one)")
        out = cells.copy()
        out.obsm[f"X_{self.name}"] = coordinates
        return out

    def _interval(self, var: pd.DataFrame, condition: str, level: float) -> dict[str, Any]:
        """Write the conformal interval of the mean response into `var`; describe it."""
        if self.calibration is None:
            return {"kind": "none: the model was fitted with calibrate=False"}
        if condition not in self.calibration:
            return {"kind": f"none: no training context other than one had '{condition}' "
                            "cells, so none could be predicted without them"}
        residuals = self.calibration[condition]
        half = half_widths(residuals.to_numpy(), level)
        lower, upper = interval_columns(level)
        var[lower] = var["predicted_response"] - half
        var[upper] = var["predicted_response"] + half
        needed = fewest_contexts(level)
        return {"kind": "split-conformal per gene, training contexts as exchangeable units",
                "level": level, "calibration_contexts": list(residuals.index),
                "finite": len(residuals) >= needed,
                "note": (f"at least {level:.0%} of genes covered in expectation if the new "
                         "context is exchangeable with the calibration contexts"
                         if len(residuals) >= needed else
                         f"{len(residuals)} calibration contexts; a finite interval at "
                         f"{level:.0%} needs {needed}: the interval is infinite")}

    def save(self, path: str | Path) -> None:
        """Write the model into the new folder `path` (`model_files`)."""
        write_model(Path(path), self.trained, self.calibration, {
            "model": self.name, "settings": dataclasses.asdict(self.settings),
            "spec": dataclasses.asdict(self.spec), "genes": list(self.genes),
            "labels": list(self.encoding.labels), "control": self.encoding.control,
            "contexts": list(self.contexts), "kind": self.kind, "device": self.device})


def _joined(predictions: list[ad.AnnData], conditions: list[str]) -> ad.AnnData:
    """One AnnData of the predictions under several conditions: their rows stacked, each
    condition's `var` columns named `<column> (<condition>)`, its description under
    `uns["perturbjax"]["conditions"][<condition>]`."""
    joined = ad.concat(predictions, merge="same")
    var = predictions[0].var.drop(columns=[c for c in predictions[0].var.columns
                                           if c.startswith(("predicted_response",
                                                            "response_"))])
    for condition, pred in zip(conditions, predictions, strict=True):
        for column in set(pred.var.columns) - set(var.columns):
            var[f"{column} ({condition})"] = pred.var[column].to_numpy()
    joined.var = var
    joined.uns["perturbjax"] = {"conditions": {c: p.uns["perturbjax"]
                                               for c, p in zip(conditions, predictions,
                                                               strict=True)}}
    return joined


def train_model(name: str, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
                workdir: Path | None = None, conditions: Sequence[str] | None = None
                ) -> TrainedModel:
    """Fit the registered model `name` on `pool` (every seed at once where it can)."""
    trained = get_model(name).fit(pool, seeds, settings, workdir, conditions)
    return wrap(name, trained, pool, settings)


def wrap(name: str, trained: Trained, pool: TrainingPool, settings: FitSettings
         ) -> TrainedModel:
    """The `TrainedModel` of a model fitted on `pool`."""
    cells = pool.cells
    return TrainedModel(name, settings, pool.spec, tuple(map(str, cells.var_names)),
                        pool.encoding,
                        tuple(sorted(cells.obs[pool.spec.context_key].astype(str).unique())),
                        input_kind(cells), trained)
