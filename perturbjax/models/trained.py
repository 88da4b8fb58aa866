"""Fit a model on one's own AnnData, predict AnnData, save and load: the public API.

    model = perturbjax.fit(adata, model="mtae", held_out="B", seeds=(1, 2))
    pred = model.predict(control_cells, condition="stimulated")   # an AnnData
    model.save("my_model"); again = perturbjax.load("my_model")

`fit` trains every seed as one program (the family's own `fit`) on every cell except the
held-out contexts' perturbed cells. `predict` returns the ensemble mean per cell in `X`, each
seed's prediction in `layers["member_<seed>"]` and the spread across seeds in `layers["std"]`
(the spread is not a calibrated interval).

How sure a prediction is: with `calibrate=True`, `fit` also trains the model once more per
training context that has perturbed cells, without that context's perturbed cells, and keeps
the absolute residual of its predicted mean response per gene (`metrics.conformal`). `predict`
then writes in `var` the predicted mean response and its split-conformal interval at `level`
(contexts as the exchangeable units), beside the seeds' spread of it, which is labelled
uncalibrated. With fewer calibration contexts than the level needs (9 at 90%, 4 at 80%) the
interval is infinite, and `uns["perturbjax"]["interval"]` says why.

`save` writes each trained program's parameters with orbax, the cells it trained on (an
h5ad: scGen and scVIDR predict from them), the calibration residuals (CSV) and a JSON
description; a loaded model predicts bitwise what the saved one did.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd

from perturbjax import __version__
from perturbjax.data.schema import PerturbationSpec, non_count_example, validate
from perturbjax.errors import PerturbjaxError
from perturbjax.files import write_csv, write_text
from perturbjax.metrics.conformal import fewest_contexts, half_widths
from perturbjax.models import LEARNED, FitSettings, Fitted
from perturbjax.models.family import ModelFamily, TrainedProgram
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult

logger = logging.getLogger("perturbjax")

DESCRIPTION = "perturbjax_model.json"
FORMAT = 1


def interval_columns(level: float) -> tuple[str, str]:
    """The `var` columns of the interval at `level`: ('response_lower_90', ...) at 0.9."""
    percent = f"{100 * level:.10g}"
    return f"response_lower_{percent}", f"response_upper_{percent}"


def input_kind(adata: ad.AnnData) -> str:
    """'counts' when X holds only non-negative integers, else 'log-normalised'."""
    return "counts" if non_count_example(adata.X) is None else "log-normalised"


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trained ensemble and what it was trained on (see the module docstring)."""

    name: str
    settings: FitSettings
    spec: PerturbationSpec
    genes: tuple[str, ...]
    encoding: ConditionEncoding
    contexts: tuple[str, ...]
    kind: str
    fitted: Fitted
    # per condition: absolute residuals of the mean response (calibration contexts x genes)
    calibration: dict[str, pd.DataFrame] | None = None

    @property
    def seeds(self) -> tuple[int, ...]:
        return next(iter(self.fitted.parts.values())).result.seeds

    def _checked(self, control: ad.AnnData, condition: str, reindex: bool) -> ad.AnnData:
        if condition not in self.encoding.labels or condition == self.encoding.control:
            known = [c for c in self.encoding.labels if c != self.encoding.control]
            raise PerturbjaxError(f"condition '{condition}' is not one the model was trained "
                                  f"on; known conditions: {known}")
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
        return control

    def predict(self, control: ad.AnnData, condition: str, reindex: bool = False,
                level: float = 0.9) -> ad.AnnData:
        """The control cells under `condition`: an AnnData (see the module docstring), with
        the interval of the mean response at `level` in `var` when the model is calibrated."""
        control = self._checked(control, str(condition), reindex)
        members = np.stack(self.fitted.predict(control, str(condition))).astype(np.float32)
        obs = control.obs.copy()
        obs[self.spec.condition_key] = str(condition)
        obs["model"] = self.name
        obs["perturbjax_prediction"] = True
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
                                  "seeds": list(self.seeds), "version": __version__,
                                  "std": "spread of the seeds' predictions, not calibrated",
                                  "interval": self._interval(pred.var, str(condition), level)}
        return pred

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
        """Parameters (orbax), training cells (h5ad) and a JSON description under `path`."""
        path = Path(path).absolute()
        if (path / DESCRIPTION).exists():
            raise PerturbjaxError(f"{path}: holds a saved model already; choose a new folder")
        path.mkdir(parents=True, exist_ok=True)
        parts = []
        for i, (condition, part) in enumerate(self.fitted.parts.items()):
            folder = path / f"part_{i}"
            checkpointer = ocp.StandardCheckpointer()
            checkpointer.save(folder / "state", {"params": part.result.params,
                                                 "model_state": part.result.model_state})
            checkpointer.wait_until_finished()
            part.pool.cells.write_h5ad(folder / "training_cells.h5ad")
            result = part.result
            parts.append({"condition": condition, "folder": folder.name,
                          "labels": list(part.pool.encoding.labels),
                          "seeds": list(result.seeds), "epochs_run": result.epochs_run,
                          "best_epoch": np.asarray(result.best_epoch).tolist(),
                          "learning_rate": np.asarray(result.learning_rate).tolist(),
                          "n_folds": result.n_folds, "select_together": result.select_together,
                          "seconds": part.seconds})
        calibration = []
        for i, (condition, residuals) in enumerate((self.calibration or {}).items()):
            write_csv(path / f"calibration_{i}.csv", residuals, index=True)
            calibration.append({"condition": condition, "file": f"calibration_{i}.csv"})
        description = {
            "format": FORMAT, "version": __version__, "model": self.name,
            "settings": dataclasses.asdict(self.settings), "spec": dataclasses.asdict(self.spec),
            "genes": list(self.genes), "labels": list(self.encoding.labels),
            "control": self.encoding.control, "contexts": list(self.contexts),
            "kind": self.kind, "parts": parts,
            "calibration": calibration if self.calibration is not None else None}
        write_text(path / DESCRIPTION, json.dumps(description, indent=1, default=str))


def fit(adata: ad.AnnData, model: str = "mtae", context_key: str = "cell_type",
        condition_key: str = "condition", control: str = "control",
        held_out: str | Sequence[str] | None = None, seeds: Sequence[int] = (1, 2, 3),
        configuration: str = "default", epochs: int | None = None,
        workdir: str | Path | None = None, calibrate: bool = True) -> TrainedModel:
    """Train `model` (any learned model of the benchmark) on every cell of `adata` except
    the perturbed cells of the `held_out` contexts, all seeds as one program; with `workdir`,
    checkpoints are kept there (`model/`, `calibration/<context>/`) and a rerun resumes.
    `calibrate` adds one fit per training context with perturbed cells, for the intervals
    (see the module docstring)."""
    if model not in LEARNED:
        raise PerturbjaxError(f"model '{model}' is not a learned model; choose from "
                              f"{sorted(LEARNED)}")
    held = [held_out] if isinstance(held_out, str) else list(held_out or [])
    spec = PerturbationSpec(context_key, condition_key, control)
    validate(adata, spec, held_out=held or None, source=adata.uns.get("source"))
    contexts = adata.obs[context_key].astype(str)
    perturbed = (adata.obs[condition_key].astype(str) != str(control)).to_numpy()
    train = adata[~(contexts.isin(held).to_numpy() & perturbed)].copy()
    encoding = ConditionEncoding.from_adata(train, spec)
    settings = FitSettings(configuration=configuration, epochs=epochs,
                           checkpoint_every=25 if workdir else 0)
    family, seeds = LEARNED[model], tuple(int(s) for s in seeds)
    folder = Path(workdir) if workdir else None
    fitted = family.fit(TrainingPool(train, spec, encoding), seeds, settings,
                        folder / "model" if folder else None)
    return TrainedModel(model, settings, spec, tuple(map(str, train.var_names)), encoding,
                        tuple(sorted(contexts.unique())), input_kind(train), fitted,
                        _calibration(family, train, spec, encoding, seeds, settings, folder)
                        if calibrate else None)


def _calibration(family: ModelFamily, train: ad.AnnData, spec: PerturbationSpec,
                 encoding: ConditionEncoding, seeds: tuple[int, ...], settings: FitSettings,
                 workdir: Path | None) -> dict[str, pd.DataFrame]:
    """Per condition, the absolute residual of the mean response per gene (calibration
    contexts x genes): each training context with perturbed cells predicted by a fit that
    did not see them."""
    contexts = train.obs[spec.context_key].astype(str).to_numpy()
    conditions = train.obs[spec.condition_key].astype(str).to_numpy()
    control = conditions == encoding.control
    residuals: dict[str, dict[str, np.ndarray]] = {}
    calibrating = sorted(set(contexts[~control]) & set(contexts[control]))
    for i, context in enumerate(calibrating):
        logger.info("calibration fit %d/%d: without the perturbed cells of %s", i + 1,
                    len(calibrating), context)
        mine = contexts == context
        others_seen = set(conditions[~mine & ~control])  # a condition the fit can predict
        pool = TrainingPool(train[~(mine & ~control)].copy(), spec, encoding)
        fitted = family.fit(pool, seeds, settings,
                            workdir / "calibration" / context if workdir else None)
        cells = train[mine & control].copy()
        for condition in sorted(set(conditions[mine & ~control]) & others_seen):
            predicted = np.mean([p.mean(axis=0) for p in fitted.predict(cells, condition)],
                                axis=0)
            real = np.asarray(train.X[mine & (conditions == condition)]).mean(axis=0)
            residuals.setdefault(condition, {})[context] = np.abs(real - predicted)
    return {c: pd.DataFrame(r, index=train.var_names.astype(str)).T
            for c, r in residuals.items()}


def load(path: str | Path) -> TrainedModel:
    """A model saved by `TrainedModel.save`."""
    path = Path(path).absolute()
    try:
        description = json.loads((path / DESCRIPTION).read_text())
    except FileNotFoundError:
        raise PerturbjaxError(f"{path}: no {DESCRIPTION}; not a saved perturbjax model") from None
    if description.get("format") != FORMAT:
        raise PerturbjaxError(f"{path / DESCRIPTION}: format {description.get('format')}, "
                              f"expected {FORMAT}")
    family = LEARNED[description["model"]]
    settings = _settings(description["settings"])
    spec = PerturbationSpec(**description["spec"])
    model_config, _ = family.configured(settings)
    parts = {}
    for entry in description["parts"]:
        folder = path / entry["folder"]
        cells = ad.read_h5ad(folder / "training_cells.h5ad")
        pool = TrainingPool(cells, spec, ConditionEncoding(tuple(entry["labels"]),
                                                           description["control"]))
        state = ocp.StandardCheckpointer().restore(folder / "state")
        result = FitResult(seeds=tuple(entry["seeds"]), params=state["params"],
                           model_state=state["model_state"],
                           learning_rate=np.asarray(entry["learning_rate"]),
                           best_epoch=np.asarray(entry["best_epoch"]),
                           epochs_run=entry["epochs_run"], train_loss=np.zeros((0, 0)),
                           val_loss=np.zeros((0, 0)), n_folds=entry.get("n_folds", 1),
                           select_together=entry.get("select_together", False))
        parts[entry["condition"]] = TrainedProgram(family.build(model_config, pool.task()),
                                                   result, pool, entry["seconds"])
    calibration = None
    if description["calibration"] is not None:
        calibration = {}
        for entry in description["calibration"]:
            residuals = pd.read_csv(path / entry["file"], index_col=0)
            calibration[entry["condition"]] = residuals.set_axis(
                residuals.index.astype(str), axis=0)
    return TrainedModel(description["model"], settings, spec, tuple(description["genes"]),
                        ConditionEncoding(tuple(description["labels"]), description["control"]),
                        tuple(description["contexts"]), description["kind"],
                        Fitted(family, parts), calibration)


def _settings(saved: dict[str, Any]) -> FitSettings:
    """The fit settings of a saved description (JSON lists back to tuples)."""
    pairing = saved.pop("pairing")
    pairing["buckets"] = tuple(pairing["buckets"])
    return FitSettings(**saved, pairing=PairingConfig(**pairing))
