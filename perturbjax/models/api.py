"""Fit a model on one's own AnnData, predict AnnData, save and load: the public API.

    model = perturbjax.fit(adata, model="mtflow", held_out="B", seeds=(1, 2))
    pred = model.predict(control_cells, condition="stimulated")   # an AnnData
    model.save("my_model"); again = perturbjax.load("my_model")

`fit` trains every seed as one program (`trained.train_model`, the same object the benchmark
uses) on every cell except the held-out contexts' perturbed cells.

How sure a prediction is: with `calibrate=True`, `fit` also trains the model once more per
training context that has perturbed cells, without that context's perturbed cells, and keeps
the absolute residual of its predicted mean response per gene (`metrics.conformal`). `predict`
then writes in `var` the predicted mean response and its split-conformal interval at `level`
(contexts as the exchangeable units), beside the seeds' spread of it, which is labelled
uncalibrated. With fewer calibration contexts than the level needs (9 at 90%, 4 at 80%) the
interval is infinite, and `uns["perturbjax"]["interval"]` says why.

`save` writes each trained program's parameters with orbax, the cells it trained on (an
h5ad: scGen and scVIDR predict from them), the calibration residuals (CSV), a JSON description
and a SHA-256 of every file (`model_files`); a loaded model predicts bitwise what the saved
one did.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.datasets import dense_x
from perturbjax.data.schema import PerturbationSpec, log_normalised_problem, validate
from perturbjax.data.splits import hold_out_mask
from perturbjax.errors import PerturbjaxError, seed_problem
from perturbjax.metrics.conformal import fewest_contexts
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.model_files import read_description
from perturbjax.models.registry import RECOMMENDED, get_model, model_names
from perturbjax.models.settings import FitSettings
from perturbjax.models.trained import TrainedModel, train_model
from perturbjax.ot import PairingConfig
from perturbjax.progress import duration, shown

logger = logging.getLogger("perturbjax")


def fit(adata: ad.AnnData, model: str = RECOMMENDED, context_key: str = "cell_type",
        condition_key: str = "condition", control: str = "control",
        held_out: str | Sequence[str] | None = None, seeds: Sequence[int] = (1, 2, 3),
        configuration: str = "default", epochs: int | None = None,
        workdir: str | Path | None = None, calibrate: bool = True, level: float = 0.9,
        progress: bool = True) -> TrainedModel:
    """Train `model` (any registered model) on every cell of `adata` except the perturbed
    cells of the `held_out` contexts, all seeds as one program; with `workdir`, checkpoints
    are kept there (`model/`, `calibration/<i>/`) and a rerun resumes. `calibrate` adds one
    fit per training context with perturbed cells, for the intervals (module docstring),
    when there are enough of them for a finite interval at `level`; otherwise it says so and
    trains none. `progress` prints about ten lines per fit, with the time left, unless
    logging is set up by the caller."""
    if model not in model_names():
        raise PerturbjaxError(f"model '{model}' is not registered; choose from "
                              f"{list(model_names())}")
    problem = seed_problem("seeds", list(seeds))
    if problem:
        raise PerturbjaxError(problem)
    if workdir is not None and Path(workdir).exists() and not Path(workdir).is_dir():
        raise PerturbjaxError(f"workdir {workdir}: is a file; expected a folder for the "
                              "checkpoints")
    held = [held_out] if isinstance(held_out, str) else list(held_out or [])
    spec = PerturbationSpec(context_key, condition_key, control)
    source = adata.uns.get("source")
    validate(adata, spec, held_out=held or None, source=source)
    problem = log_normalised_problem(adata.X)
    if problem:
        raise PerturbjaxError(f"{source or 'the AnnData given to fit'}: {problem}")
    needed = fewest_contexts(level)  # also checks the level
    train = adata[~hold_out_mask(adata, spec, held)].copy()
    train.X = dense_x(train.X)
    encoding = ConditionEncoding.from_adata(train, spec)
    settings = FitSettings(configuration=configuration, epochs=epochs,
                           checkpoint_every=25 if workdir else 0)
    problems = get_model(model).settings_problems(settings, one_program=False)
    if problems:
        raise PerturbjaxError("; ".join(problems))
    seeds, folder = tuple(int(s) for s in seeds), Path(workdir) if workdir else None
    pool = TrainingPool(train, spec, encoding)
    contexts = calibration_contexts(pool) if calibrate else []
    with shown(progress):
        if calibrate and len(contexts) < needed:
            finite = (f"levels up to {len(contexts) / (len(contexts) + 1):.1%} are finite with "
                      f"{len(contexts)} (fit(..., level=...))" if contexts else
                      "no level is finite without one")
            logger.warning("no calibration: %d training contexts have control and perturbed "
                           "cells, and a finite interval at %.0f%% needs %d; %s. No "
                           "calibration fit is trained.", len(contexts), 100 * level, needed,
                           finite)
            contexts = []
        logger.info("fit: model '%s' on %d cells, %d seeds%s", model, train.n_obs, len(seeds),
                    f", then {len(contexts)} calibration fits like it" if contexts else "")
        started = time.perf_counter()
        trained = train_model(model, pool, seeds, settings, folder / "model" if folder else None)
        seconds = time.perf_counter() - started
        if contexts:
            logger.info("fit: the model took %s; the %d calibration fits will take about %s",
                        duration(seconds), len(contexts), duration(seconds * len(contexts)))
        calibration = (_calibration(model, pool, contexts, seeds, settings, folder)
                       if contexts else None)
    # The pool keeps every context (a held-out one keeps its control cells), so the trained
    # object's contexts are the data's.
    return dataclasses.replace(trained, calibration=calibration)


def calibration_contexts(pool: TrainingPool) -> list[str]:
    """The training contexts with both control and perturbed cells: each is predicted by one
    calibration fit that did not see its perturbed cells."""
    spec = pool.spec
    contexts = pool.cells.obs[spec.context_key].astype(str).to_numpy()
    control = (pool.cells.obs[spec.condition_key].astype(str) == pool.encoding.control
               ).to_numpy()
    return sorted(set(contexts[~control]) & set(contexts[control]))


def _calibration(model: str, pool: TrainingPool, calibrating: list[str],
                 seeds: tuple[int, ...], settings: FitSettings, workdir: Path | None
                 ) -> dict[str, pd.DataFrame]:
    """Per condition, the absolute residual of the mean response per gene (calibration
    contexts x genes): each training context with perturbed cells predicted by a fit of the
    same model that did not see them."""
    train, spec = pool.cells, pool.spec
    contexts = train.obs[spec.context_key].astype(str).to_numpy()
    conditions = train.obs[spec.condition_key].astype(str).to_numpy()
    control = conditions == pool.encoding.control
    residuals: dict[str, dict[str, np.ndarray]] = {}
    for i, context in enumerate(calibrating):
        logger.info("calibration fit %d/%d: without the perturbed cells of %s", i + 1,
                    len(calibrating), context)
        mine = contexts == context
        others_seen = set(conditions[~mine & ~control])  # a condition the fit can predict
        held = TrainingPool(train[~hold_out_mask(train, spec, [context])].copy(), spec,
                            pool.encoding)
        fitted = train_model(model, held, seeds, settings,
                             workdir / "calibration" / str(i) if workdir else None)
        cells = train[mine & control].copy()
        for condition in sorted(set(conditions[mine & ~control]) & others_seen):
            predicted = np.mean([p.mean(axis=0)
                                 for p in fitted.predict_members(cells, condition)], axis=0)
            real = np.asarray(train.X[mine & (conditions == condition)]).mean(axis=0)
            residuals.setdefault(condition, {})[context] = np.abs(real - predicted)
    return {c: pd.DataFrame(r, index=train.var_names.astype(str)).T
            for c, r in residuals.items()}


def load(path: str | Path) -> TrainedModel:
    """A model saved by `TrainedModel.save`, its files checked against their hashes."""
    path = Path(path).absolute()
    description = read_description(path)
    try:
        model = get_model(description["model"])
    except KeyError:
        raise PerturbjaxError(f"{path}: model '{description['model']}' is not registered in "
                              "this version; register it before loading") from None
    settings = _settings(description["settings"])
    spec = PerturbationSpec(**description["spec"])
    trained = model.load_trained(path, description["parts"], settings, spec,
                                 description["control"])
    calibration = None
    if description["calibration"] is not None:
        calibration = {}
        for entry in description["calibration"]:
            residuals = pd.read_csv(path / entry["file"], index_col=0)
            calibration[entry["condition"]] = residuals.set_axis(
                residuals.index.astype(str), axis=0)
    return TrainedModel(description["model"], settings, spec, tuple(description["genes"]),
                        ConditionEncoding(tuple(description["labels"]), description["control"]),
                        tuple(description["contexts"]), description["kind"], trained,
                        calibration, description.get("device", "unknown (format 1)"))


def _settings(saved: dict[str, Any]) -> FitSettings:
    """The fit settings of a saved description (JSON lists back to tuples)."""
    pairing = dict(saved.pop("pairing"))
    pairing["buckets"] = tuple(pairing["buckets"])
    return FitSettings(**saved, pairing=PairingConfig(**pairing))
