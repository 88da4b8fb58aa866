"""A learned model family: its named configurations, how it trains and how it predicts.

`family.fit(pool, seeds, settings, workdir)` trains every seed of the family as one program on a
training pool and returns a `Fitted`, whose `predict(control cells, condition)` gives one
prediction per seed. Everything a family does differently lives here: optimal-transport
pairing and the warm start of the "plus OT" variants, one fit per condition for
single-perturbation models, the configuration's own adjustments (`adjust`), and the scaling of
its training phases when the study shortens or lengthens the run. A study sees none of it.
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

from perturbjax.data.fingerprint import content_hash
from perturbjax.models.fitting import (
    ConditionEncoding,
    Task,
    TrainingPool,
    fit_on_anndata,
    fit_on_pairs,
    predict_decoded,
)
from perturbjax.models.inner_selection import choose_inner_contexts, fit_on_inner_hold_outs
from perturbjax.models.pooled import fit_pools
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult, TrainConfig
from perturbjax.train.objective import Objective

logger = logging.getLogger("perturbjax")

PAIRINGS = ("none", "ot", "plus_ot", "unpaired")
# Model schedules counted in epochs: phases, and scButterfly's KL warm-up.
SCHEDULE_FIELDS = ("pretrain_epochs", "discriminator_epochs", "kl_warmup_epochs")

# (objective, trained members, training pool, control cells, condition) -> one
# (control cells x genes) prediction per member.
Predictor = Callable[[Objective, FitResult, TrainingPool, ad.AnnData, str], list[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """What a study sets on every learned model: the configuration name, an epoch count that
    overrides the configuration's (its phases keep their proportions), checkpoints, the
    condition vector ("one_hot" or "log_dose"), whether condition labels are doses, and how
    optimal-transport pairs are made."""

    configuration: str = "default"
    epochs: int | None = None
    checkpoint_every: int = 0
    conditioning: str = "one_hot"
    doses: bool = False
    pairing: PairingConfig = PairingConfig()


@dataclasses.dataclass(frozen=True)
class Batching:
    """How a learned model consumes its training pool: batch size, validation fraction,
    whether it trains once per condition (on control + that condition), and whether its rows
    are an unpaired table (as many rows as the larger of its control and perturbed sets)."""

    batch_size: int
    validation_fraction: float
    per_condition: bool
    unpaired: bool = False


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
    seed; `runs` is each seed's bookkeeping (epochs run, best epoch, learning rate, seconds).
    A single-perturbation model holds one trained program per condition."""

    family: ModelFamily
    parts: dict[str | None, TrainedProgram]  # condition -> its program; None: every condition

    def _part(self, condition: str) -> TrainedProgram:
        part = self.parts.get(condition, self.parts.get(None))
        if part is None:
            raise KeyError(f"model '{self.family.name}' was trained for the conditions "
                           f"{sorted(self.parts)}, not '{condition}'")
        return part

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        part = self._part(condition)
        return self.family.predict(part.objective, part.result, part.pool, control, condition)

    def runs(self, condition: str) -> list[dict]:
        part = self._part(condition)
        # Folds that select together share each seed's epoch and rate: the first tells them.
        result = part.result.fold(0) if part.result.select_together else part.result
        return [{"seed": seed, "epochs_run": result.epochs_run, "best_epoch": int(best) + 1,
                 "learning_rate": float(lr), "train_seconds": part.seconds}
                for seed, best, lr in zip(result.seeds, result.best_epoch, result.learning_rate,
                                          strict=True)]


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

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"model '{self.name}': pairing must be one of {PAIRINGS}")

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

    def batching(self, settings: FitSettings) -> Batching:
        train_config = self.configured(settings)[1]
        return Batching(train_config.batch_size, train_config.validation_fraction,
                        self.per_condition, self.pairing == "unpaired")

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
                       workdir / f"condition_{c}" if workdir else None)
        return jobs

    def fit(self, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
            workdir: Path | None = None, conditions: Sequence[str] | None = None) -> Fitted:
        """Train every seed on `pool` as one program (checkpoints under `workdir`); a
        single-perturbation model is trained once per condition (`_jobs`)."""
        return Fitted(self, {c: self._fit_programs([job], job_workdir, seeds, settings)[0]
                             for c, (job, job_workdir) in
                             self._jobs(pool, workdir, conditions).items()})

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
            job_workdir = workdir / f"condition_{c}" if workdir and c is not None else workdir
            programs = self._fit_programs([jobs[name][c][0] for name in names], job_workdir,
                                          seeds, settings)
            for name, program in zip(names, programs, strict=True):
                parts[name][c] = program
        return {name: Fitted(self, parts[name]) for name in names}

    def _fit_programs(self, pools: Sequence[TrainingPool], workdir: Path | None,
                      seeds: Sequence[int], settings: FitSettings) -> list[TrainedProgram]:
        """One program over `pools`: the plain fit, the pair fit, or the former
        warm-starting the latter; one pool trains as `fit_on_anndata` / `fit_on_pairs`,
        several as folds (`pooled.fit_pools`). Each pool's program gets an equal share of
        the wall time."""
        started = time.perf_counter()
        model_config, train_config = self.configured(settings)
        spec, encoding = pools[0].spec, pools[0].encoding
        objectives = [self.build(model_config, pool.task()) for pool in pools]
        if any(o != objectives[0] for o in objectives):
            raise ValueError(f"model '{self.name}' builds a different objective per pool (its "
                             "configuration reads the pool, e.g. the KL weight scaled by the "
                             "training cells): train it one pool at a time")
        objective = objectives[0]
        fingerprint = {"model": self.name, "configuration": settings.configuration,
                       "model_config": dataclasses.asdict(model_config),
                       "data": [content_hash(p.cells, [spec.context_key, spec.condition_key])
                                for p in pools]}
        if len(pools) == 1:
            fingerprint["data"] = fingerprint["data"][0]

        if (train_config.inner_contexts and len(pools) == 1
                and not choose_inner_contexts(pools[0].cells, spec, train_config.inner_contexts)):
            logger.warning("model '%s', configuration '%s': the pool has fewer than 2 training "
                           "contexts with control and perturbed cells, so the learning rate "
                           "and epoch are chosen on the validation reconstruction instead of "
                           "inner held-out contexts", self.name, settings.configuration)
            train_config = dataclasses.replace(train_config, inner_contexts=0)
        inner = train_config.inner_contexts
        if inner and (len(pools) > 1 or self.pairing == "unpaired"):
            raise ValueError(f"model '{self.name}', configuration '{settings.configuration}', "
                             "selects on inner held-out contexts, which trains one pool of "
                             "paired or plain rows at a time: train context by context")

        def fit_once(pairs: bool, workdir: Path | None, extra: dict,
                     warm_start: FitResult | None = None) -> FitResult:
            unpaired = self.pairing == "unpaired"
            common = {"workdir": workdir, "fingerprint": {**fingerprint, **extra}}
            if inner:
                return fit_on_inner_hold_outs(objective, train_config, pools[0].cells, spec,
                                              encoding, seeds,
                                              settings.pairing if pairs else None,
                                              warm_start=warm_start,
                                              self_pairs=self.self_pairs, **common)
            if len(pools) > 1:
                return fit_pools(objective, train_config, [p.cells for p in pools], spec,
                                 encoding, seeds, pairs=pairs, pairing=settings.pairing,
                                 unpaired=unpaired, self_pairs=self.self_pairs,
                                 warm_start=warm_start, **common)
            if not (pairs or unpaired):
                return fit_on_anndata(objective, train_config, pools[0].cells, spec, encoding,
                                      seeds, **common)
            return fit_on_pairs(objective, train_config, pools[0].cells, spec, encoding, seeds,
                                None if unpaired else settings.pairing, unpaired=unpaired,
                                warm_start=warm_start, self_pairs=self.self_pairs, **common)

        if self.pairing == "unpaired":
            result = fit_once(False, workdir, {"pairing": "unpaired"})
        else:
            result = None
            if self.pairing != "ot":
                result = fit_once(False, workdir, {})
            if self.pairing != "none":
                result = fit_once(True, workdir / "pairs" if workdir else None,
                                  {"pairing": self.pairing,
                                   **dataclasses.asdict(settings.pairing)}, result)
        seconds = (time.perf_counter() - started) / len(pools)
        if len(pools) == 1:
            return [TrainedProgram(objective, result, pools[0], seconds)]
        return [TrainedProgram(objective, result.fold(f), pool, seconds)
                for f, pool in enumerate(pools)]
