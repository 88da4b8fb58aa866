"""A learned model family: its named configurations, how it trains and what it needs.

`family.fit(pool, seeds, settings, workdir)` trains every seed of the family as one program on a
training pool and returns a `Fitted`, whose `predict(control cells, condition)`
gives one prediction per seed. Everything a family does differently lives here: its passes
(`routes`: optimal-transport pairs, the warm start of the "plus OT" variants, inner-context
selection), one fit per condition for single-perturbation models, the configuration's own
adjustments (`adjust`), the scaling of its training phases when the study shortens or
lengthens the run, and what it needs of a pool. A study sees none of it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

from perturbjax.data.fingerprint import content_hash, normalised
from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import hold_out_mask, is_control, stratified_validation_mask
from perturbjax.errors import PerturbjaxError
from perturbjax.files import safe_name
from perturbjax.models.compact_space import CompactSpace
from perturbjax.models.fitting import ConditionEncoding, Task, TrainingPool, predict_decoded
from perturbjax.models.inner_selection import choose_inner_contexts
from perturbjax.models.program_files import load_programs, save_programs
from perturbjax.models.routes import PASSES, Route, train_pass
from perturbjax.models.settings import FitSettings
from perturbjax.train import FitResult, TrainConfig
from perturbjax.train.objective import Objective

logger = logging.getLogger("perturbjax")

PAIRINGS = tuple(PASSES)
# Model schedules counted in epochs: phases, and scButterfly's KL warm-up.
SCHEDULE_FIELDS = ("pretrain_epochs", "discriminator_epochs", "kl_warmup_epochs")

# (objective, trained members, training pool, control cells, condition) -> one
# (control cells x genes) prediction per member.
Predictor = Callable[[Objective, FitResult, TrainingPool, ad.AnnData, str], list[np.ndarray]]


def _unchanged(model_config: Any, settings: FitSettings) -> Any:
    return model_config


@dataclasses.dataclass(frozen=True)
class TrainedProgram:
    """One trained program: its objective, members, the pool it saw and its wall time."""

    objective: Objective
    result: FitResult
    pool: TrainingPool
    seconds: float


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A trained family: `predict` decodes control cells under a condition, one array per
    seed; `runs` is each seed's bookkeeping (epochs run, best epoch, learning rate, seconds)."""

    family: ModelFamily
    parts: dict[str | None, TrainedProgram]  # condition -> its program; None: every condition

    @property
    def seeds(self) -> tuple[int, ...]:
        return next(iter(self.parts.values())).result.seeds

    def _part(self, condition: str) -> TrainedProgram:
        part = self.parts.get(condition, self.parts.get(None))
        if part is None:
            raise PerturbjaxError(f"model '{self.family.name}' was trained for the conditions "
                                  f"{sorted(self.parts)}, not '{condition}'")
        return part

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        part = self._part(condition)
        return self.family.predict(part.objective, part.result, part.pool, control, condition)

    def embed(self, cells: ad.AnnData) -> np.ndarray | None:
        """The cells' coordinates in the space the family's objective shares across members
        (`Objective.embedding`), or None when it has none."""
        part = next(iter(self.parts.values()))
        return part.objective.embedding(np.asarray(cells.X, np.float32))

    def runs(self, condition: str) -> list[dict]:
        part = self._part(condition)
        # Folds that select together share each seed's epoch and rate: the first tells them.
        result = part.result.fold(0) if part.result.select_together else part.result
        return [{"seed": seed, "epochs_run": result.epochs_run, "best_epoch": int(best) + 1,
                 "learning_rate": float(lr), "train_seconds": part.seconds}
                for seed, best, lr in zip(result.seeds, result.best_epoch, result.learning_rate,
                                          strict=True)]

    def history(self) -> dict[str | None, dict[str, np.ndarray]]:
        """Per program: training and validation loss per (member, epoch)."""
        return {c: {"train_loss": p.result.train_loss, "val_loss": p.result.val_loss}
                for c, p in self.parts.items()}

    def save(self, path: Path) -> list[dict[str, Any]]:
        """Write each program under `path/part_<i>` (`program_files`)."""
        return save_programs(path, [(c, p.result, p.pool, p.seconds)
                                    for c, p in self.parts.items()])


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A learned model: named (architecture, training) configurations, a builder
    `build(config, task)`, and what it trains on: "none" (each cell reconstructs itself),
    "ot" (optimal-transport pairs), "plus_ot" (the former, then fine-tuned on the latter) or
    "unpaired" (rows of one control and one perturbed cell drawn independently: two unpaired
    domains).

    `predict` turns the trained members into predictions (default: decode the control cells
    under the condition). `per_condition` marks a single-perturbation model: on data with
    several perturbed conditions (doses) it is trained once per condition, on the control
    cells and that condition's cells only. `doses_only` marks a model whose condition labels
    must be doses (the multi-dose design). `self_pairs` False trains a paired model on the
    control -> perturbed pairs only (no control -> itself rows). `adjust(model_config,
    settings)` applies the study's settings that the model's configuration reads.
    `space_components(model_config)`, for a model below gene space, is the size of the
    compact space (`compact_space`) fitted on each fit's own training cells: never on its
    validation split, nor on the perturbed cells of its inner contexts.
    """

    name: str
    configs: dict[str, tuple[Any, TrainConfig]]
    build: Callable[[Any, Task], Objective]
    pairing: str = "none"
    predict: Predictor = predict_decoded
    per_condition: bool = False
    doses_only: bool = False
    self_pairs: bool = True
    adjust: Callable[[Any, FitSettings], Any] = _unchanged
    space_components: Callable[[Any], int] | None = None
    role = "learned"
    floor = False

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"model '{self.name}': pairing must be one of {PAIRINGS}")

    @property
    def decodes_unseen_conditions(self) -> bool:
        """A multi-condition program can decode a condition code it never trained on."""
        return not self.per_condition

    def config(self, name: str) -> tuple[Any, TrainConfig]:
        """The configuration called `name`; a family with a single one (a baseline's
        published settings) runs it under every name a study asks for."""
        if len(self.configs) == 1:
            return next(iter(self.configs.values()))
        if name not in self.configs:
            raise KeyError(f"model '{self.name}' has no configuration '{name}' "
                           f"(available: {sorted(self.configs)})")
        return self.configs[name]

    def configured(self, settings: FitSettings) -> tuple[Any, TrainConfig]:
        """The named configuration with the study's settings applied."""
        model_config, train_config = self.config(settings.configuration)
        model_config = self.adjust(model_config, settings)
        if settings.epochs is not None:
            # A phase schedule (epochs of pre-training, of the discriminator alone) keeps its
            # proportions of the shortened or lengthened run.
            phases = {name: round(getattr(model_config, name) * settings.epochs
                                  / train_config.epochs)
                      for name in SCHEDULE_FIELDS if hasattr(model_config, name)}
            model_config = dataclasses.replace(model_config, **phases)
            train_config = dataclasses.replace(train_config, epochs=settings.epochs)
        return model_config, dataclasses.replace(train_config,
                                                 checkpoint_every=settings.checkpoint_every)

    def schedule(self, settings: FitSettings) -> dict:
        """The resolved configuration and training schedule its predictions depend on."""
        model_config, train_config = self.configured(settings)
        return {"model": dataclasses.asdict(model_config),
                "train": dataclasses.asdict(train_config)}

    def describe(self, schedule: dict, settings: FitSettings) -> dict[str, str]:
        """The configuration name and training budget of a recorded `schedule`: the named
        configuration that resolves to it (at the run's epochs or at its own), else
        'unnamed'."""
        train = schedule["train"]
        name = self.named_configuration(schedule, settings, (settings.epochs, train["epochs"]))
        phases = [f"{schedule['model'][k]} {k.removesuffix('_epochs')}"
                  for k in SCHEDULE_FIELDS if schedule["model"].get(k)]
        score = train.get("selection_score", "response").replace("_", " ")
        selection = (f"{train['inner_contexts']} inner contexts' {score}"
                     if train.get("inner_contexts") else "validation reconstruction")
        rates = len(train["learning_rates"])
        return {"configuration": name,
                "budget": f"{train['epochs']} epochs" + (f" ({', '.join(phases)})" if phases
                                                          else "")
                + f" x {rates} rate{'s' if rates > 1 else ''}, selected on {selection}"}

    def named_configuration(self, schedule: dict, settings: FitSettings,
                            epochs: Sequence[int | None]) -> str:
        """The named configuration that resolves to a recorded `schedule` under `settings` at
        one of `epochs` (a run's --epochs setting, the schedule's own budget), else
        'unnamed'."""
        recorded = normalised(schedule)
        return next((n for n in self.configs for e in epochs
                     if self._as_recorded(self.schedule(dataclasses.replace(
                         settings, configuration=n, epochs=e)), recorded) == recorded),
                    "unnamed")

    def _as_recorded(self, schedule: dict, recorded: dict) -> dict:
        """`schedule` without the fields a `recorded` one lacks where they hold their
        defaults: a field added later at the value that keeps the old behaviour."""
        model_config, train_config = next(iter(self.configs.values()))
        defaults = {part: {f.name: normalised(f.default) for f in dataclasses.fields(config)
                           if f.default is not dataclasses.MISSING}
                    for part, config in (("model", model_config), ("train", train_config))}
        return {part: {k: v for k, v in values.items()
                       if k in recorded.get(part, {}) or defaults[part].get(k, v) != v}
                for part, values in normalised(schedule).items()}

    def settings_problems(self, settings: FitSettings, one_program: bool) -> list[str]:
        """Why `settings` cannot train this family (an unknown configuration, or inner-context
        selection asked to train several pools as one program)."""
        try:
            train_config = self.configured(settings)[1]
        except KeyError as error:
            return [str(error.args[0])]
        if one_program and train_config.inner_contexts:
            return [f"one_program: model '{self.name}' selects on inner held-out contexts "
                    f"(configuration '{settings.configuration}'), trained one pool at a "
                    "time: train context by context, or use the configuration "
                    "'reconstruction'"]
        return []

    def pool_problems(self, cells: ad.AnnData, spec: PerturbationSpec,
                      conditions: Sequence[str], settings: FitSettings) -> list[str]:
        """Why training on `cells` to predict `conditions` cannot work: a program (one per
        condition for a single-perturbation family) with fewer rows than one batch after
        its validation split."""
        train_config = self.configured(settings)[1]
        control = is_control(cells, spec)
        labels = cells.obs[spec.condition_key].astype(str).to_numpy()
        subsets = ([control | (labels == c) for c in conditions] if self.per_condition
                   else [np.ones(cells.n_obs, bool)])
        for subset in subsets:
            val = stratified_validation_mask(cells[subset], spec,
                                             train_config.validation_fraction, 0)
            trained = control[subset][~val]
            n_rows, unit = len(trained), "cells"
            if self.pairing == "unpaired":
                n_rows = max(int(trained.sum()), int((~trained).sum()))
                unit = "rows (the larger of its control and perturbed cells)"
            if n_rows < train_config.batch_size:
                return [f"model '{self.name}' would train on {n_rows} {unit} after its "
                        f"validation split, fewer than one batch of {train_config.batch_size}"]
        return []

    def load_trained(self, path: Path, entries: list[dict[str, Any]], settings: FitSettings,
                     spec: PerturbationSpec, control: str) -> Fitted:
        """The programs a saved model holds under `path` (`Fitted.save`)."""
        model_config, train_config = self.configured(settings)
        programs = {}
        for condition, result, pool, seconds in load_programs(path, entries, spec, control):
            inner = bool(train_config.inner_contexts and choose_inner_contexts(
                pool.cells, spec, train_config.inner_contexts))
            task = self._task(pool, model_config, train_config, inner)
            programs[condition] = TrainedProgram(self.build(model_config, task), result, pool,
                                                 seconds)
        return Fitted(self, programs)

    def _task(self, pool: TrainingPool, model_config: Any, train_config: TrainConfig,
              inner: bool) -> Task:
        """What `build` gets for `pool`: its task, with the compact space fitted on the
        pool's cells less those the fit is scored on (the perturbed cells of its inner
        contexts when it selects on them, else its validation split)."""
        task = pool.task()
        if self.space_components is None:
            return task
        cells, spec = pool.cells, pool.spec
        if inner:
            scored = hold_out_mask(cells, spec, choose_inner_contexts(
                cells, spec, train_config.inner_contexts))
        else:
            scored = stratified_validation_mask(cells, spec, train_config.validation_fraction,
                                                0)
        return dataclasses.replace(task, space=CompactSpace.of_cells(
            cells[~scored], self.space_components(model_config)))

    def _jobs(self, pool: TrainingPool, workdir: Path | None,
              conditions: Sequence[str] | None) -> dict[str | None, tuple[TrainingPool,
                                                                         Path | None]]:
        """The programs a pool needs: one (None), or for a single-perturbation model on
        several perturbed conditions, one per condition of `conditions` (default: every
        perturbed condition of the pool) on the control cells and that condition's cells."""
        encoding, spec = pool.encoding, pool.spec
        labels = pool.cells.obs[spec.condition_key].astype(str)
        perturbed = sorted(set(labels) - {encoding.control})
        if not (self.per_condition and len(perturbed) > 1):
            return {None: (pool, workdir)}
        jobs = {}
        for c in conditions if conditions is not None else perturbed:
            keep = labels.isin([encoding.control, c]).to_numpy()
            jobs[c] = (TrainingPool(pool.cells[keep].copy(), spec,
                                    ConditionEncoding(tuple(sorted([encoding.control, c])),
                                                      encoding.control)),
                       workdir / f"condition_{safe_name(c)}" if workdir else None)
        return jobs

    def fit(self, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
            workdir: Path | None = None, conditions: Sequence[str] | None = None) -> Fitted:
        """Train every seed on `pool` as one program (checkpoints under `workdir`); a
        single-perturbation model is trained once per condition (`_jobs`)."""
        parts = {}
        for condition, (job, job_workdir) in self._jobs(pool, workdir, conditions).items():
            parts[condition] = self._fit_programs([job], job_workdir, seeds, settings)[0]
        return Fitted(self, parts)

    def fit_pools(self, pools: Mapping[str, TrainingPool], seeds: Sequence[int],
                  settings: FitSettings, workdir: Path | None = None,
                  conditions: Sequence[str] | None = None) -> dict[str, Fitted]:
        """`fit` on each of several pools of one data set (e.g. one per held-out context),
        all of them as one program (`pooled.fit_pools`): name -> its `Fitted`, the same
        within float rounding as `fit` on that pool alone. Refused for a model whose
        objective depends on the pool."""
        names = list(pools)
        jobs = {name: self._jobs(pool, None, conditions) for name, pool in pools.items()}
        parts: dict[str, dict[str | None, TrainedProgram]] = {name: {} for name in names}
        for c in jobs[names[0]]:
            job_workdir = (workdir / f"condition_{safe_name(c)}" if workdir and c is not None
                           else workdir)
            programs = self._fit_programs([jobs[name][c][0] for name in names], job_workdir,
                                          seeds, settings)
            for name, program in zip(names, programs, strict=True):
                parts[name][c] = program
        return {name: Fitted(self, parts[name]) for name in names}

    def _selects_on_inner_contexts(self, pools: Sequence[TrainingPool],
                                   train_config: TrainConfig, settings: FitSettings) -> bool:
        """Whether the configuration's inner-context selection applies to `pools`: a pool
        without 2 eligible training contexts falls back to the reconstruction, with a warning;
        several pools or unpaired rows cannot select on them at all."""
        if not train_config.inner_contexts:
            return False
        if len(pools) == 1 and not choose_inner_contexts(pools[0].cells, pools[0].spec,
                                                         train_config.inner_contexts):
            logger.warning("model '%s', configuration '%s': the pool has fewer than 2 training "
                           "contexts with control and perturbed cells, so the learning rate "
                           "and epoch are chosen on the validation reconstruction instead of "
                           "inner held-out contexts", self.name, settings.configuration)
            return False
        if len(pools) > 1 or self.pairing == "unpaired":
            raise ValueError(f"model '{self.name}', configuration '{settings.configuration}', "
                             "selects on inner held-out contexts, which trains one pool of "
                             "paired or plain rows at a time: train context by context")
        return True

    def _fit_programs(self, pools: Sequence[TrainingPool], workdir: Path | None,
                      seeds: Sequence[int], settings: FitSettings) -> list[TrainedProgram]:
        """One program over `pools`: the family's passes (`routes.PASSES`), each
        warm-starting the next; one pool trains alone, several as folds (`pooled`). Each
        pool's program gets an equal share of the wall time."""
        started = time.perf_counter()
        model_config, train_config = self.configured(settings)
        spec = pools[0].spec
        inner = self._selects_on_inner_contexts(pools, train_config, settings)
        if not inner:
            train_config = dataclasses.replace(train_config, inner_contexts=0)
        objectives = [self.build(model_config, self._task(pool, model_config, train_config,
                                                          inner)) for pool in pools]
        if any(o != objectives[0] for o in objectives):
            raise ValueError(f"model '{self.name}' builds a different objective per pool (its "
                             "configuration reads the pool, e.g. the KL weight scaled by the "
                             "training cells, or a compact space fitted on them): train it "
                             "one pool at a time")
        fingerprint = {"model": self.name, "configuration": settings.configuration,
                       "model_config": dataclasses.asdict(model_config),
                       "data": [content_hash(p.cells, [spec.context_key, spec.condition_key])
                                for p in pools]}
        if len(pools) == 1:
            fingerprint["data"] = fingerprint["data"][0]
        result = None
        for rows in PASSES[self.pairing]:
            extra = ({"pairing": "unpaired"} if rows == "unpaired" else
                     {"pairing": self.pairing, **dataclasses.asdict(settings.pairing)}
                     if rows == "pairs" else {})
            pass_workdir = workdir / "pairs" if workdir and rows == "pairs" else workdir
            result = train_pass(Route(rows, inner, len(pools) > 1), objectives[0],
                                train_config, pools, seeds, settings.pairing, self.self_pairs,
                                result, pass_workdir, {**fingerprint, **extra})
        seconds = (time.perf_counter() - started) / len(pools)
        if len(pools) == 1:
            return [TrainedProgram(objectives[0], result, pools[0], seconds)]
        return [TrainedProgram(objectives[0], result.fold(f), pool, seconds)
                for f, pool in enumerate(pools)]
