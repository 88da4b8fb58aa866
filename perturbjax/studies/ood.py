"""The out-of-distribution benchmark: hold out each context, predict its perturbed cells.

`run(config, workdir)` is the whole study as a library call: load and validate the data, for
every held-out context train each learned model (all seeds as one vmapped program), predict
from the context's control cells, score every prediction against the real perturbed cells and
write the metrics table, a markdown summary with the penalty ranking, figures, checkpoints and
the resolved configuration into `workdir`.

Three designs share the protocol: "single" (one perturbation, e.g. Kang's cell types),
"multidose" (every dose is a condition, scored per dose and averaged) and "species" (the
held-out unit is a species). Conditions in `held_out_conditions` are removed from the training
pool of every context: a dose never seen at all. Their scores form a table of their own, beside
each model's prediction with the nearest seen dose (`<model>@nearest`); only a continuous dose
encoding (`conditioning="log_dose"`) can predict them directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax import plots
from perturbjax.data import (
    NAULT_SPEC,
    SPECIES_SPEC,
    MultiDoseConfig,
    PerturbationSpec,
    SpeciesConfig,
    SyntheticConfig,
    hold_out,
    load_h5ad,
    load_nault,
    load_species,
    make_multidose_data,
    make_perturbation_data,
    make_species_data,
    normalize_log1p,
    select_hvgs,
    validate,
)
from perturbjax.data.fingerprint import content_hash
from perturbjax.data.schema import DataValidationError
from perturbjax.data.splits import HoldOut
from perturbjax.errors import RunValidationError
from perturbjax.files import markdown_table, write_csv, write_text
from perturbjax.metrics import HeldOutReference, evaluate_prediction, penalty_ranking
from perturbjax.metrics.calibration import (
    CALIBRATED,
    CEILING,
    FLOOR_REFERENCES,
    Ceiling,
    add_discrimination,
    calibrate,
    floor_models,
)
from perturbjax.metrics.distances import DISTANCES
from perturbjax.metrics.evaluate import evaluation_ceiling
from perturbjax.metrics.response import RESPONSE_METRICS, mean_response
from perturbjax.models import LEARNED, REFERENCES, ModelFamily, check_model_names
from perturbjax.models.fitting import ConditionEncoding, fit_on_anndata, fit_on_pairs
from perturbjax.models.mtae import MTAeConfig
from perturbjax.ot import PairingConfig
from perturbjax.studies.ood_checks import Batching, config_problems, data_problems
from perturbjax.studies.run_record import RUN_FILE, claim_workdir, write_record
from perturbjax.train.loop import FitResult, TrainConfig
from perturbjax.train.objective import Objective

log = logging.getLogger("perturbjax")

# The response metrics (`metrics.response`), led by the discrimination across contexts.
RESPONSE_SUMMARY = [*RESPONSE_METRICS, "discrimination"]
HEADLINE = ["pearson_delta_top100", "r2_delta_top100", "degs_robust"]  # per-context tables
# The source documents' metrics and ranking.
RANKED_METRICS = ["degs", "r2_all", "r2_top20", "r2_top100", *DISTANCES]
SUMMARY_METRICS = ["degs", "degs_abs", "r2_all", "r2_top20", "r2_top100", "r2_top100_sub",
                   "edistance", "edistance_ratio", "euclidean", "mmd_rbf", "wasserstein"]
HELD_OUT_DOSE_METRICS = ["mse_means", "r2_all", "r2_top100", "euclidean", "edistance"]
DESIGNS = ("single", "multidose", "species")
# Model schedules counted in epochs: phases, and scButterfly's KL warm-up.
SCHEDULE_FIELDS = ("pretrain_epochs", "discriminator_epochs", "kl_warmup_epochs")
NEAREST = "@nearest"  # suffix of a model's prediction with the nearest seen dose


@dataclasses.dataclass(frozen=True)
class OODConfig:
    """Everything that defines one benchmark run.

    `design` is "single", "multidose" or "species". `data` is "synthetic" (the design's
    embedded generator, configured by `synthetic` / `multidose` / `species_data`) or the path
    of an h5ad file: for "single" any file whose obs columns are named by the three keys, for
    the others the published schemas (scVIDR's Nault file with raw counts, scGen's species
    file). `held_out` empty means every context. `epochs` overrides the model configuration's
    epoch count. `conditioning` is the condition vector of every learned model ("one_hot" or
    "log_dose"); `held_out_conditions` are removed from training everywhere (see above).
    `ceiling_repeats` is the number of random half splits of the real cells behind each
    context's replicate ceiling (`metrics.calibration`). The floor references
    (`FLOOR_REFERENCES`) are scored in every run, asked for or not: every calibrated score
    is measured from them.
    """

    design: str = "single"
    data: str = "synthetic"
    context_key: str = "cell_type"
    condition_key: str = "condition"
    control_value: str = "control"
    counts: bool = False
    n_top_genes: int | None = None
    held_out: tuple[str, ...] = ()
    models: tuple[str, ...] = ("mtae", "control", "mean_shift", "mean_shift_balanced", "linear")
    configuration: str = "default"
    seeds: tuple[int, ...] = (1, 2, 19193)
    epochs: int | None = None
    checkpoint_every: int = 25
    conditioning: str = "one_hot"
    held_out_conditions: tuple[str, ...] = ()
    pairing: PairingConfig = PairingConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    multidose: MultiDoseConfig = MultiDoseConfig()
    species_data: SpeciesConfig = SpeciesConfig()
    ceiling_repeats: int = 10
    figures: bool = True

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"OODConfig.design must be one of {DESIGNS}, got '{self.design}'")
        if str(self.spec.control_value) in self.held_out_conditions:
            raise ValueError("held_out_conditions cannot include the control condition")
        if self.ceiling_repeats < 1:
            raise ValueError(f"OODConfig.ceiling_repeats must be at least 1, got "
                             f"{self.ceiling_repeats}")

    @property
    def spec(self) -> PerturbationSpec:
        """The obs columns: the flags for "single", the published schema otherwise."""
        if self.design == "multidose":
            return NAULT_SPEC
        if self.design == "species":
            return SPECIES_SPEC
        return PerturbationSpec(self.context_key, self.condition_key, self.control_value)


def available_models(design: str) -> tuple[str, ...]:
    """Every model that can run on `design` (dose-only models need the multi-dose design)."""
    return tuple(name for name, family in LEARNED.items()
                 if design == "multidose" or not family.doses_only) + tuple(REFERENCES)


@dataclasses.dataclass
class OODResults:
    """The metrics table (one row per model, context, condition, seed) and the ranking."""

    metrics: pd.DataFrame
    ranking: pd.DataFrame
    summary: str


def load_dataset(config: OODConfig) -> ad.AnnData:
    """The configured data set, validated against its schema (raw counts stay raw)."""
    held_out = config.held_out or None
    if config.data == "synthetic":
        adata = {"single": lambda: make_perturbation_data(config.synthetic),
                 "multidose": lambda: make_multidose_data(config.multidose),
                 "species": lambda: make_species_data(config.species_data)}[config.design]()
        validate(adata, config.spec, held_out=held_out, source=f"synthetic {config.design}")
    elif config.design == "multidose":
        adata = load_nault(config.data)  # counts, filtered and log-normalised by the loader
    elif config.design == "species":
        adata = load_species(config.data)
    else:
        adata = load_h5ad(config.data, config.spec, held_out=held_out)
    if held_out and config.data != "synthetic" and config.design != "single":
        validate(adata, config.spec, held_out=held_out, source=config.data)
    missing = set(config.held_out_conditions) - set(adata.obs[config.spec.condition_key]
                                                     .astype(str))
    if missing:
        raise DataValidationError(f"held_out_conditions {sorted(missing)} are not conditions "
                                  f"of the data (obs '{config.spec.condition_key}')")
    return adata


Predictions = dict[str, list[np.ndarray]]  # condition -> one (cells x genes) array per seed
Runs = dict[str, list[dict]]  # condition -> per seed: the fit's bookkeeping (epochs, seconds)


def _predict_reference(model: str, split: HoldOut, config: OODConfig,
                       conditions: list[str]) -> tuple[Predictions, Runs]:
    """A deterministic reference: one prediction per condition, no seed."""
    return ({c: [REFERENCES[model](split, config.spec, c)] for c in conditions},
            {c: [{"seed": None}] for c in conditions})


def _configured(family: ModelFamily, config: OODConfig) -> tuple[Any, TrainConfig]:
    """The family's named configuration with the study's overrides applied."""
    model_config, train_config = family.config(config.configuration)
    if isinstance(model_config, MTAeConfig):
        model_config = dataclasses.replace(model_config, conditioning=config.conditioning)
        if config.design == "multidose" and config.configuration == "thesis":
            # The seed's multi-dose models first embed the condition: Dense 16 + LeakyReLU.
            model_config = dataclasses.replace(model_config, film_embedding=16)
    if config.epochs is not None:
        # A phase schedule (epochs of pre-training, of the discriminator alone) keeps its
        # proportions of the shortened or lengthened run.
        phases = {name: round(getattr(model_config, name) * config.epochs / train_config.epochs)
                  for name in SCHEDULE_FIELDS if hasattr(model_config, name)}
        model_config = dataclasses.replace(model_config, **phases)
        train_config = dataclasses.replace(train_config, epochs=config.epochs)
    return model_config, dataclasses.replace(train_config,
                                             checkpoint_every=config.checkpoint_every)


def _fit_family(family: ModelFamily, model_config: Any, train_config: TrainConfig,
                train: ad.AnnData, config: OODConfig, encoding: ConditionEncoding,
                checkpoints: Path, fingerprint: dict) -> tuple[Objective, FitResult]:
    """Train every seed of one family on `train` as one program (pairs per its pairing)."""
    objective = family.build(model_config, train.n_vars, encoding.labels, encoding.control,
                             n_train=train.n_obs,
                             n_contexts=train.obs[config.spec.context_key].nunique())
    if family.pairing == "unpaired":
        return objective, fit_on_pairs(objective, train_config, train, config.spec, encoding,
                                       config.seeds, workdir=checkpoints, unpaired=True,
                                       fingerprint={**fingerprint, "pairing": "unpaired"})
    result = None
    if family.pairing != "ot":
        result = fit_on_anndata(objective, train_config, train, config.spec, encoding,
                                config.seeds, workdir=checkpoints, fingerprint=fingerprint)
    if family.pairing != "none":
        result = fit_on_pairs(objective, train_config, train, config.spec, encoding,
                              config.seeds, config.pairing, workdir=checkpoints / "pairs",
                              fingerprint={**fingerprint, "pairing": family.pairing,
                                           **dataclasses.asdict(config.pairing)},
                              warm_start=result, self_pairs=family.self_pairs)
    return objective, result


def _predict_learned(model: str, split: HoldOut, config: OODConfig, encoding: ConditionEncoding,
                     conditions: list[str], workdir: Path) -> tuple[Predictions, Runs]:
    """Train every seed of a learned model as one program, then predict each condition.

    A single-perturbation model (`per_condition`) on data with several perturbed conditions
    is trained once per condition, on the control cells and that condition's cells."""
    family = LEARNED[model]
    model_config, train_config = _configured(family, config)
    fingerprint = {"model": model, "configuration": config.configuration,
                   "model_config": dataclasses.asdict(model_config)}
    checkpoints = workdir / "checkpoints" / model / split.context
    labels = split.train.obs[config.spec.condition_key].astype(str)
    perturbed = set(labels) - {encoding.control}
    jobs = [(split, encoding, conditions, checkpoints)]
    if family.per_condition and len(perturbed) > 1:
        jobs = []
        for c in conditions:
            keep = labels.isin([encoding.control, c]).to_numpy()
            jobs.append((dataclasses.replace(split, train=split.train[keep].copy()),
                         ConditionEncoding(tuple(sorted([encoding.control, c])),
                                           encoding.control),
                         [c], checkpoints / f"condition_{c}"))
    predictions, runs = {}, {}
    for task, task_encoding, task_conditions, task_checkpoints in jobs:
        started = time.perf_counter()
        trained_on = {"data": content_hash(task.train, [config.spec.context_key,
                                                        config.spec.condition_key])}
        objective, result = _fit_family(family, model_config, train_config, task.train, config,
                                        task_encoding, task_checkpoints,
                                        fingerprint | trained_on)
        seconds = time.perf_counter() - started
        for c in task_conditions:
            predictions[c] = family.predict(objective, result, task, config.spec,
                                            task_encoding, c)
            runs[c] = [{"seed": seed, "epochs_run": result.epochs_run,
                        "best_epoch": int(best) + 1, "learning_rate": float(lr),
                        "train_seconds": seconds}
                       for seed, best, lr in zip(result.seeds, result.best_epoch,
                                                 result.learning_rate, strict=True)]
    return predictions, runs


def _write_figures(split: HoldOut, references: dict[str, HeldOutReference],
                   first_seed: dict[str, dict[str, np.ndarray]], workdir: Path) -> None:
    for condition, predictions in first_seed.items():
        ref = references[condition]
        tag = f"{split.context}_{condition}".replace("/", "_").replace(" ", "_")
        title = f"held out {split.context}, {condition}"
        plots.effect_scatter(ref.response.response,
                             {name: mean_response(p, ref.response.control_mean)
                              for name, p in predictions.items()},
                             ref.response.top(100), workdir / "figures" / f"response_{tag}.png",
                             title=f"{title}: predicted vs real response (top-100 DEGs marked)",
                             xlabel="real response d_R", ylabel="predicted response d_P")
        plots.mean_scatter(ref.real, predictions, ref.subsets["top100"],
                           workdir / "figures" / f"means_{tag}.png", title=title)
        projected = {name: ref.pca.transform(p) for name, p in predictions.items()}
        plots.embedding_scatter({"control": ref.control_pcs, "real": ref.real_pcs, **projected},
                                workdir / "figures" / f"pca_{tag}.png",
                                title=f"{title} (PCA of real cells)")


def nearest_seen_condition(condition: str, seen: list[str]) -> str:
    """The seen dose closest to `condition` on the log1p(dose) scale (labels are doses)."""
    try:
        target, doses = np.log1p(float(condition)), np.log1p([float(c) for c in seen])
    except ValueError as error:
        raise ValueError(f"held-out conditions need numeric dose labels; got '{condition}' "
                         f"and {seen}") from error
    return seen[int(np.argmin(np.abs(doses - target)))]


@dataclasses.dataclass
class Scored:
    """The rows of a run so far, and what the run-level scores need besides them: each row's
    predicted response, and per (context, condition) the real response and the ceiling."""

    rows: list[dict] = dataclasses.field(default_factory=list)
    predicted: list[np.ndarray] = dataclasses.field(default_factory=list)
    real: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    ceilings: dict[tuple[str, str], Ceiling] = dataclasses.field(default_factory=dict)

    def add(self, other: Scored) -> None:
        """Append the rows and responses of another part of the run (one finished context)."""
        self.rows += other.rows
        self.predicted += other.predicted
        self.real.update(other.real)
        self.ceilings.update(other.ceilings)

    def table(self) -> pd.DataFrame:
        """The metrics table: discrimination across the contexts so far, every score
        calibrated between its floor and its ceiling."""
        metrics = add_discrimination(pd.DataFrame(self.rows), dict(enumerate(self.predicted)),
                                     self.real, self.ceilings)
        names = [c[: -len(CEILING)] for c in metrics.columns if c.endswith(CEILING)]
        return calibrate(metrics, names)


def _evaluate_context(split: HoldOut, config: OODConfig, encoding: ConditionEncoding,
                      workdir: Path) -> Scored:
    """Predict with every model on one held-out context and score each prediction; every row
    carries the context's ceiling of every metric.

    A condition in `config.held_out_conditions` is scored twice per learned model: decoded
    under its own code (`<model>`) and under the nearest seen dose (`<model>@nearest`);
    references and single-perturbation models, which need training cells of the condition,
    only the latter."""
    condition_of = split.truth.obs[config.spec.condition_key].astype(str)
    conditions = [c for c in encoding.labels
                  if c != str(config.spec.control_value) and (condition_of == c).any()]
    seen = sorted(set(split.train.obs[config.spec.condition_key].astype(str))
                  - {str(config.spec.control_value)})
    nearest = {c: nearest_seen_condition(c, seen) for c in conditions
               if c in config.held_out_conditions}
    started = time.perf_counter()
    references = {
        c: HeldOutReference.build(split.control.X, split.truth.X[(condition_of == c).to_numpy()],
                                  split.control.var_names)
        for c in conditions
    }
    ceilings = {c: evaluation_ceiling(references[c], config.ceiling_repeats) for c in conditions}
    scoring_seconds = time.perf_counter() - started
    scored = Scored()
    for c in conditions:
        scored.real[(split.context, c)] = references[c].response.response
        scored.ceilings[(split.context, c)] = ceilings[c]
    first_seed = {c: {} for c in conditions}
    models = [*config.models, *(m for m in FLOOR_REFERENCES if m not in config.models)]
    for model in models:
        # (name in the table, condition scored, condition decoded)
        direct = model in LEARNED and not LEARNED[model].per_condition
        plan = [(model, c, c) for c in conditions if direct or c not in nearest]
        plan += [(model + NEAREST, c, nearest[c]) for c in conditions if c in nearest]
        decoded = sorted({d for _, _, d in plan})
        if model in REFERENCES:
            predictions, runs = _predict_reference(model, split, config, decoded)
        else:
            predictions, runs = _predict_learned(model, split, config, encoding, decoded,
                                                 workdir)
        for name, condition, decoded_as in plan:
            per_seed = predictions[decoded_as]
            ref = references[condition]
            if model in config.models:
                first_seed[condition][name] = per_seed[0]
            for run_info, pred in zip(runs[decoded_as], per_seed, strict=True):
                started = time.perf_counter()
                scores = evaluate_prediction(ref, pred, seed=run_info["seed"] or 0)
                scoring_seconds += time.perf_counter() - started
                scored.rows.append({
                    "model": name, "context": split.context, "condition": condition,
                    "decoded_as": decoded_as, "held_out_condition": condition in nearest,
                    **run_info, **scores,
                    **{k + CEILING: v for k, v in ceilings[condition].scores.items()}})
                scored.predicted.append(mean_response(pred, ref.response.control_mean))
    for row in scored.rows:  # the context's whole scoring: references, ceilings, every row
        row["scoring_seconds"] = scoring_seconds
    if config.figures:
        _write_figures(split, references, first_seed, workdir)
    return scored


def _mean_sd_table(metrics: pd.DataFrame, columns: list[str], order) -> pd.DataFrame:
    stats = metrics.groupby("model")[columns].agg(["mean", "std"])
    table = pd.DataFrame(index=stats.index)
    for metric in columns:
        mean, sd = stats[(metric, "mean")], stats[(metric, "std")].fillna(0.0)
        table[metric] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd, strict=True)]
    return table.loc[[m for m in order if m in table.index]]


def _ceiling_row(metrics: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The replicate ceiling as one more row of a raw-value table (mean ± sd over contexts
    and conditions; one value per context, as it has no seed)."""
    per_context = metrics.drop_duplicates(["context", "condition"])
    ceilings = per_context[[c + CEILING for c in columns]].set_axis(columns, axis=1)
    return _mean_sd_table(ceilings.assign(model="replicate ceiling"), columns,
                          ["replicate ceiling"])


def _per(metrics: pd.DataFrame, index: str, metric: str) -> str:
    """A markdown table of `metric` per `index` value (rows) and model (columns), the mean
    over everything else."""
    return markdown_table(metrics.pivot_table(index=index, columns="model", values=metric))


def rankings(metrics: pd.DataFrame) -> pd.DataFrame:
    """Both rankings, by model: the penalty ranking on the calibrated response metrics
    (`response_penalty`, `response_rank`) beside the source documents' penalty ranking on
    their metrics (`source_penalty`, `source_rank`); sorted by the former."""
    response = penalty_ranking(metrics, [m + CALIBRATED for m in RESPONSE_SUMMARY])
    source = penalty_ranking(metrics, RANKED_METRICS)
    table = pd.DataFrame({"response_penalty": response["penalty"],
                          "response_rank": response["rank"],
                          "source_penalty": source["penalty"], "source_rank": source["rank"]})
    return table.sort_values("response_penalty")


def _floor_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Which trivial reference is the floor of each headline metric, per context."""
    floors = pd.DataFrame({m: floor_models(metrics, m)
                           for m in ["pearson_delta", *HEADLINE, "discrimination"]})
    return floors.reset_index()


def summarize(metrics: pd.DataFrame, missing: Sequence[str] = ()) -> tuple[pd.DataFrame, str]:
    """Rankings (`rankings`) and a markdown summary: the calibrated response metrics first
    (mean ± sd per model, per context), then the source documents' metrics. Conditions held
    out of training everywhere are left out of the rankings and get a table of their own.
    `missing`: contexts of a stopped run that have no rows (named at the top)."""
    held = (metrics["held_out_condition"].astype(bool) if "held_out_condition" in metrics
            else pd.Series(False, index=metrics.index))
    main = metrics[~held]
    ranking = rankings(main)
    calibrated = [m + CALIBRATED for m in RESPONSE_SUMMARY]
    parts = [
        "# OOD benchmark summary",
        *([f"**Partial run**: contexts {list(missing)} are missing (see run.json)."]
          if missing else []),
        f"{main['context'].nunique()} held-out contexts, {main['condition'].nunique()} "
        f"condition(s), {main['seed'].dropna().nunique()} seeds of the learned models. Mean "
        "± sd over contexts, conditions and seeds (references are deterministic: one row per "
        "context).",
        "Response metrics score the predicted response d_P = mean(pred) - mean(control) "
        "against the real one, d_R = mean(real) - mean(control), on the real top DEGs "
        "(Wilcoxon, |score|, genes expressed in 10% of cells); `degs_robust` is the overlap "
        "of the top-100 DEG lists of real vs control and of pred vs control, tested apart; "
        "`discrimination` ranks each prediction among the real responses of all held-out "
        "contexts (1: nearest its own; about 0.5: blind to the context). The `control` "
        "reference's Pearson scores are 0 by definition (its d_P is 0).",
        "**Calibrated** = (score - floor) / (ceiling - floor). Floor: the better of the "
        f"trivial references {list(FLOOR_REFERENCES)} on that context. Ceiling: half of the "
        "real perturbed cells as a prediction of the other half (mean over random splits). "
        "0 = no better than a trivial reference, 1 = as good as a replicate of the real "
        "cells, < 0 = worse than a trivial reference; blank where the ceiling is no better "
        "than the floor.",
        "## Response metrics, calibrated",
        markdown_table(_mean_sd_table(main, calibrated, ranking.index)
                       .set_axis(RESPONSE_SUMMARY, axis=1)),
        "## Response metrics, raw values (last row: the replicate ceiling)",
        markdown_table(pd.concat([_mean_sd_table(main, RESPONSE_SUMMARY, ranking.index),
                                  _ceiling_row(main, RESPONSE_SUMMARY)])),
        "## Rankings: calibrated response metrics beside the source documents' penalty "
        "ranking (lower penalty is better)",
        markdown_table(ranking),
    ]
    for metric in HEADLINE:
        parts += [f"## Calibrated {metric} per held-out context (mean over seeds and "
                  "conditions)", _per(main, "context", metric + CALIBRATED)]
    parts += ["## The floor: the best trivial reference per held-out context and metric",
              markdown_table(_floor_table(main).set_index(["context", "condition"])),
              "## The source documents' metrics",
              "Distances are raw d(real, pred) in a 50-PC PCA fitted on real cells; `_ratio` "
              "is d(real, pred) / d(control, pred).",
              markdown_table(_mean_sd_table(main, SUMMARY_METRICS, ranking.index))]
    for metric, title in (("edistance", "E-distance"),
                          ("r2_top100", "R² over the top-100 DEGs")):
        parts += [f"## {title} per held-out context (mean over seeds and conditions)",
                  _per(main, "context", metric)]
    if main["condition"].nunique() > 1:
        for metric in ("pearson_delta_top100" + CALIBRATED, "r2_top100", "edistance"):
            parts += [f"## {metric} per condition (mean over contexts and seeds)",
                      _per(main, "condition", metric)]
    if held.any():
        models = sorted(metrics.loc[held, "model"].unique())
        parts += ["## Conditions never seen in training (mean ± sd over contexts, conditions "
                  "and seeds); `@nearest` = predicted with the nearest seen dose; "
                  "`mse_means` = mean squared error of the gene means",
                  markdown_table(_mean_sd_table(metrics[held], HELD_OUT_DOSE_METRICS, models))]
    return ranking, "\n\n".join(parts) + "\n"


def _batching(config: OODConfig) -> dict[str, Batching]:
    """How each learned model of the run consumes its training pool."""
    out = {}
    for model in config.models:
        if model in LEARNED:
            train_config = _configured(LEARNED[model], config)[1]
            family = LEARNED[model]
            out[model] = Batching(train_config.batch_size, train_config.validation_fraction,
                                  family.per_condition, family.pairing == "unpaired")
    return out


def run_fingerprint(config: OODConfig, adata: ad.AnnData) -> dict:
    """What a workdir's results depend on: the configuration (figures aside), each learned
    model's resolved configuration and schedule, and the content of the data."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "figures"}
    schedules = {}
    for model in config.models:
        if model in LEARNED:
            model_config, train_config = _configured(LEARNED[model], config)
            schedules[model] = {"model": dataclasses.asdict(model_config),
                                "train": dataclasses.asdict(train_config)}
    spec = config.spec
    return {"config": settings, "schedules": schedules,
            "data": content_hash(adata, [spec.context_key, spec.condition_key])}


def check_run(config: OODConfig, workdir: Path) -> tuple[ad.AnnData, list[str]]:
    """The validation pass: every problem of the settings (before the data loads), then of
    the data, raised together as one `RunValidationError`. Returns the data, log-normalised,
    and the contexts to hold out."""
    problems = config_problems(config.seeds, config.epochs, config.n_top_genes,
                               config.checkpoint_every, workdir)
    try:
        check_model_names(config.models)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise RunValidationError("the run's settings", problems)
    adata = load_dataset(config)
    spec = config.spec
    contexts = list(config.held_out) or sorted(adata.obs[spec.context_key].astype(str).unique())
    raw_counts = config.counts and config.design == "single"
    problems = data_problems(adata, spec, contexts, config.held_out_conditions, raw_counts,
                             _batching(config), source=config.data)
    if problems:
        raise RunValidationError(f"data '{config.data}'", problems)
    return (normalize_log1p(adata) if raw_counts else adata), contexts


OUTPUTS = ("config.json", RUN_FILE, "metrics.csv", "summary.md", "ranking.csv", "checkpoints",
           "figures")


def run(config: OODConfig, workdir: str | Path, overwrite: bool = False) -> OODResults:
    """Run the benchmark and write its outputs into `workdir` (see the module docstring).

    Everything is checked before anything is written (`check_run`); a workdir holding another
    run (other data, configuration or schedule) is refused unless `overwrite`. `run.json`
    records progress: a run stopped midway leaves the rows of its completed contexts, marked
    partial there and in `summary.md`."""
    workdir = Path(workdir)
    adata, contexts = check_run(config, workdir)
    fingerprint = run_fingerprint(config, adata)
    claim_workdir(workdir, fingerprint, OUTPUTS, overwrite)
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(workdir / "config.json",
               json.dumps(dataclasses.asdict(config), indent=2, default=str))
    write_record(workdir, fingerprint, [], contexts)
    spec = config.spec
    encoding = ConditionEncoding.from_adata(adata, spec)
    scored, done = Scored(), []
    try:
        for i, context in enumerate(contexts):
            log.info("held-out context %s (%d/%d)", context, i + 1, len(contexts))
            split = hold_out(adata, spec, context)
            if config.held_out_conditions:
                unseen = split.train.obs[spec.condition_key].astype(str).isin(
                    config.held_out_conditions).to_numpy()
                split = dataclasses.replace(split, train=split.train[~unseen].copy())
            split = select_hvgs(split, config.n_top_genes)
            scored.add(_evaluate_context(split, config, encoding, workdir))
            done.append(context)
            write_csv(workdir / "metrics.csv", scored.table())
            write_record(workdir, fingerprint, done, contexts[len(done):])
    except BaseException as error:
        write_record(workdir, fingerprint, done, contexts[len(done):],
                     error=f"{type(error).__name__}: {error}")
        if done:
            write_text(workdir / "summary.md",
                       summarize(scored.table(), missing=contexts[len(done):])[1])
        raise
    metrics = scored.table()
    ranking, summary = summarize(metrics)
    write_text(workdir / "summary.md", summary)
    write_csv(workdir / "ranking.csv", ranking, index=True)
    if config.figures:
        main = metrics[~metrics["held_out_condition"]]
        plots.metric_bars(main, SUMMARY_METRICS, workdir / "figures" / "metric_bars.png")
        plots.score_heatmaps(
            {m: main.pivot_table(index="model", columns="context", values=m + CALIBRATED)
             .reindex(ranking.index) for m in HEADLINE},
            workdir / "figures" / "calibrated_heatmap.png",
            title="calibrated score per model and held-out context (0: best trivial "
                  "reference, 1: replicate ceiling)")
    return OODResults(metrics=metrics, ranking=ranking, summary=summary)
