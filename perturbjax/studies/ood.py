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
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data import (
    NAULT_SPEC,
    SPECIES_SPEC,
    MultiDoseConfig,
    PerturbationSpec,
    SpeciesConfig,
    SyntheticConfig,
    hold_out,
    normalize_log1p,
    select_hvgs,
)
from perturbjax.data.fingerprint import content_hash
from perturbjax.data.splits import HoldOut
from perturbjax.errors import RunValidationError
from perturbjax.files import write_csv, write_text
from perturbjax.metrics import HeldOutReference, evaluate_prediction
from perturbjax.metrics.calibration import CEILING, FLOOR_REFERENCES, Ceiling
from perturbjax.metrics.evaluate import evaluation_ceiling
from perturbjax.metrics.response import mean_response
from perturbjax.models import (
    LEARNED,
    REFERENCES,
    Batching,
    FitSettings,
    Fitted,
    check_model_names,
)
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.ot import PairingConfig
from perturbjax.progress import Progress
from perturbjax.studies.ood_cells import Cells, cell_file, merge_cells
from perturbjax.studies.ood_checks import config_problems, data_problems
from perturbjax.studies.ood_data import load_data
from perturbjax.studies.ood_predictions import (
    read_predictions,
    read_responses,
    row_key,
    write_predictions,
    write_responses,
)
from perturbjax.studies.ood_report import (
    NEAREST,
    summarise,
    write_context_figures,
    write_run_figures,
)
from perturbjax.studies.ood_table import Scored
from perturbjax.studies.report import write_config, write_report
from perturbjax.studies.run_record import (
    RUN_FILE,
    claim_workdir,
    hold_workdir,
    write_record,
)

logger = logging.getLogger("perturbjax")

DESIGNS = ("single", "multidose", "species")


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
    is measured from them. `one_program` trains each learned model on all its missing
    held-out contexts at once, the contexts as folds of one program (`models.pooled`): one
    compilation per model instead of one per context, and the contexts side by side on an
    accelerator; the numbers equal the per-context loop's within float rounding.
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
    one_program: bool = False

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
    """The metrics table (one row per model, context, condition, seed), the conformal
    intervals' coverage (one row per model, context, condition, level) and the ranking."""

    metrics: pd.DataFrame
    coverage: pd.DataFrame
    ranking: pd.DataFrame
    summary: str


Predictions = dict[str, list[np.ndarray]]  # condition -> one (cells x genes) array per seed
RunRecords = dict[str, list[dict]]  # condition -> per seed: the fit's bookkeeping (epochs, seconds)


class ExternalModel(Protocol):
    """A model trained outside this package (a peer in its own environment) and scored on the
    same protocol: same training pools, held-out contexts, seeds and metrics. Its cells are
    recorded with `schedule`, what its predictions depend on."""

    schedule: dict

    def predict(self, split: HoldOut, spec: PerturbationSpec, conditions: list[str],
                seeds: tuple[int, ...]) -> tuple[Predictions, RunRecords]:
        """Train on `split.train` and predict `split.control` under each condition, once per
        seed; each seed's bookkeeping dict has at least `seed`."""
        ...


def _predict_reference(model: str, split: HoldOut, config: OODConfig,
                       conditions: list[str]) -> tuple[Predictions, RunRecords]:
    """A deterministic reference: one prediction per condition, no seed."""
    return ({c: [REFERENCES[model](split, config.spec, c)] for c in conditions},
            {c: [{"seed": None}] for c in conditions})


def fit_settings(config: OODConfig) -> FitSettings:
    """What the run sets on every learned model."""
    return FitSettings(configuration=config.configuration, epochs=config.epochs,
                       checkpoint_every=config.checkpoint_every,
                       conditioning=config.conditioning, doses=config.design == "multidose",
                       pairing=config.pairing)


def _predict_learned(model: str, split: HoldOut, config: OODConfig, encoding: ConditionEncoding,
                     conditions: list[str], workdir: Path, fitted: Fitted | None = None
                     ) -> tuple[Predictions, RunRecords]:
    """Train every seed of a learned model as one program (unless `fitted` holds it,
    trained with the other contexts), then predict each condition."""
    if fitted is None:
        fitted = LEARNED[model].fit(TrainingPool(split.train, config.spec, encoding),
                                    config.seeds, fit_settings(config),
                                    workdir / "checkpoints" / model / split.context,
                                    conditions=conditions)
    return ({c: fitted.predict(split.control, c) for c in conditions},
            {c: fitted.runs(c) for c in conditions})


def nearest_seen_condition(condition: str, seen: list[str]) -> str:
    """The seen dose closest to `condition` on the log1p(dose) scale (labels are doses)."""
    try:
        target, doses = np.log1p(float(condition)), np.log1p([float(c) for c in seen])
    except ValueError as error:
        raise ValueError(f"held-out conditions need numeric dose labels; got '{condition}' "
                         f"and {seen}") from error
    return seen[int(np.argmin(np.abs(doses - target)))]


@dataclasses.dataclass
class ContextTruth:
    """A held-out context's split and what every prediction of it is scored against: the
    real response per condition (`references`), the replicate ceilings, and the seconds
    these took. `nearest` maps each condition never seen in training to its nearest seen
    dose."""

    split: HoldOut
    conditions: list[str]
    nearest: dict[str, str]
    references: dict[str, HeldOutReference]
    ceilings: dict[str, Ceiling]
    seconds: float

    @classmethod
    def build(cls, split: HoldOut, config: OODConfig, encoding: ConditionEncoding
              ) -> ContextTruth:
        spec = config.spec
        condition_of = split.truth.obs[spec.condition_key].astype(str)
        conditions = [c for c in encoding.labels
                      if c != str(spec.control_value) and (condition_of == c).any()]
        seen = sorted(set(split.train.obs[spec.condition_key].astype(str))
                      - {str(spec.control_value)})
        nearest = {c: nearest_seen_condition(c, seen) for c in conditions
                   if c in config.held_out_conditions}
        started = time.perf_counter()
        references = {c: HeldOutReference.build(
            split.control.X, split.truth.X[(condition_of == c).to_numpy()],
            split.control.var_names) for c in conditions}
        ceilings = {c: evaluation_ceiling(references[c], config.ceiling_repeats)
                    for c in conditions}
        return cls(split, conditions, nearest, references, ceilings,
                   time.perf_counter() - started)

    def plan(self, model: str) -> list[tuple[str, str, str]]:
        """(name in the table, condition scored, condition decoded) of a model's rows.

        A condition in `config.held_out_conditions` is scored twice per learned model:
        decoded under its own code (`<model>`) and under the nearest seen dose
        (`<model>@nearest`); references and single-perturbation models, which need training
        cells of the condition, only the latter."""
        direct = model in LEARNED and not LEARNED[model].per_condition
        plan = [(model, c, c) for c in self.conditions if direct or c not in self.nearest]
        return plan + [(model + NEAREST, c, self.nearest[c]) for c in self.conditions
                       if c in self.nearest]


def _score(model: str, truth: ContextTruth, predictions: Predictions, runs: RunRecords
           ) -> Scored:
    """Every (seed, condition) row of one model on one context, and its predicted
    responses; each row carries the context's ceiling of every metric."""
    part, started = Scored(), time.perf_counter()
    for name, condition, decoded_as in truth.plan(model):
        ref = truth.references[condition]
        for run_info, pred in zip(runs[decoded_as], predictions[decoded_as], strict=True):
            scores = evaluate_prediction(ref, pred, seed=run_info["seed"] or 0)
            part.rows.append({
                "model": name, "context": truth.split.context, "condition": condition,
                "decoded_as": decoded_as, "held_out_condition": condition in truth.nearest,
                **run_info, **scores,
                **{k + CEILING: v for k, v in truth.ceilings[condition].scores.items()}})
            part.predicted.append(mean_response(pred, ref.response.control_mean))
    for row in part.rows:
        row["scoring_seconds"] = time.perf_counter() - started
        row["reference_seconds"] = truth.seconds
    return part


def _new_cell(model: str, truth: ContextTruth, config: OODConfig,
              encoding: ConditionEncoding, workdir: Path,
              external: Mapping[str, ExternalModel], fitted: Fitted | None = None
              ) -> tuple[Scored, Predictions]:
    """Train (a learned or external model; a learned one may come `fitted` already) and
    predict one cell, write its predictions file, score what is read back from it and keep
    each row's predicted response."""
    split = truth.split
    decoded = sorted({d for _, _, d in truth.plan(model)})
    if model in external:
        predictions, runs = external[model].predict(split, config.spec, decoded, config.seeds)
    elif model in REFERENCES:
        predictions, runs = _predict_reference(model, split, config, decoded)
    else:
        predictions, runs = _predict_learned(model, split, config, encoding, decoded, workdir,
                                             fitted)
    saved = cell_file(workdir, "predictions", model, split.context)
    write_predictions(saved, split.control, config.spec.condition_key, model, predictions, runs)
    predictions = read_predictions(saved, config.spec.condition_key, runs)
    part = _score(model, truth, predictions, runs)
    write_responses(cell_file(workdir, "responses", model, split.context),
                    [row_key(r["model"], r["condition"], r["seed"]) for r in part.rows],
                    part.predicted)
    return part, predictions


def _done_cell(model: str, context: str, cells: Cells, workdir: Path) -> Scored:
    """A cell the workdir holds: its stored rows and their predicted responses."""
    rows = cells.rows_of(model, context)
    responses = read_responses(cell_file(workdir, "responses", model, context))
    part = Scored(rows=rows)
    for row in rows:
        part.predicted.append(responses[row_key(row["model"], row["condition"], row["seed"])])
    return part


def _saved_predictions(model: str, truth: ContextTruth, config: OODConfig, cells: Cells,
                       workdir: Path) -> Predictions | None:
    """A done cell's predictions, read from its file if the workdir still has it."""
    path = cell_file(workdir, "predictions", model, truth.split.context)
    if not path.is_file():
        return None
    runs: RunRecords = {}
    for row in cells.rows_of(model, truth.split.context):
        seeds = runs.setdefault(row["decoded_as"], [])
        if {"seed": row["seed"]} not in seeds:
            seeds.append({"seed": row["seed"]})
    return read_predictions(path, config.spec.condition_key, runs)


def _first_seed(model: str, truth: ContextTruth, predictions: Predictions,
                figures: dict[str, dict[str, np.ndarray]]) -> None:
    """Add the first seed's prediction of each of a model's rows to the context's figures."""
    for name, condition, decoded_as in truth.plan(model):
        figures[condition][name] = predictions[decoded_as][0]


def _fit_together(config: OODConfig, contexts: list[str], cells: Cells,
                  truth_of: Callable[[str], ContextTruth], encoding: ConditionEncoding,
                  workdir: Path, external: Collection[str]) -> dict[tuple[str, str], Fitted]:
    """(model, context) -> its fit: each learned model's missing contexts trained as one
    program (`ModelFamily.fit_pools`), checkpointed under checkpoints/<model>/one_program."""
    fitted: dict[tuple[str, str], Fitted] = {}
    for model in config.models:
        missing = [c for c in contexts if not cells.has(model, c)]
        if model not in LEARNED or model in external or not missing:
            continue
        truths = {c: truth_of(c) for c in missing}
        decoded = {c: sorted({d for _, _, d in t.plan(model)}) for c, t in truths.items()}
        conditions = decoded[missing[0]]
        if LEARNED[model].per_condition and any(d != conditions for d in decoded.values()):
            raise ValueError(f"model '{model}' trains one program per condition, and the "
                             f"held-out contexts decode different conditions {decoded}: "
                             "train it without one_program")
        logger.info("model %s: %d held-out contexts as one program", model, len(missing))
        pools = {c: TrainingPool(t.split.train, config.spec, encoding)
                 for c, t in truths.items()}
        together = LEARNED[model].fit_pools(pools, config.seeds, fit_settings(config),
                                            workdir / "checkpoints" / model / "one_program",
                                            conditions=conditions)
        fitted.update({(model, c): f for c, f in together.items()})
    return fitted


def _batching(config: OODConfig) -> dict[str, Batching]:
    """How each learned model of the run consumes its training pool."""
    return {model: LEARNED[model].batching(fit_settings(config))
            for model in config.models if model in LEARNED}


def model_schedules(config: OODConfig, external: Mapping[str, ExternalModel] | None = None
                    ) -> dict[str, dict | None]:
    """Each model's resolved configuration and training schedule (None: a reference; an
    external model's own `schedule`)."""
    schedules = {}
    for model in config.models:
        schedules[model] = external[model].schedule if model in (external or {}) else None
        if model in LEARNED:
            model_config, train_config = LEARNED[model].configured(fit_settings(config))
            schedules[model] = {"model": dataclasses.asdict(model_config),
                                "train": dataclasses.asdict(train_config)}
    return schedules


def run_fingerprint(config: OODConfig, adata: ad.AnnData) -> dict:
    """What a workdir's table depends on: the settings every cell shares (the models, the
    held-out contexts and the figures aside: a table grows by both; nor whether contexts
    train as one program) and the content of the data (not the path's spelling). Each
    model's schedule is recorded with its cells (`ood_cells`)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("figures", "models", "held_out", "data", "one_program")}
    spec = config.spec
    return {"config": settings,
            "data": content_hash(adata, [spec.context_key, spec.condition_key])}


def check_run(config: OODConfig, workdir: Path, external: Collection[str] = ()
              ) -> tuple[ad.AnnData, list[str]]:
    """The validation pass: every problem of the settings (before the data loads), then of
    the data, raised together as one `RunValidationError`. Returns the data, log-normalised,
    and the contexts to hold out."""
    problems = config_problems(config.seeds, config.epochs, config.n_top_genes,
                               config.checkpoint_every, workdir)
    if config.one_program and config.n_top_genes:
        problems.append("one_program needs the same genes in every training pool; "
                        "n_top_genes chooses them per pool: train context by context")
    try:
        check_model_names([m for m in config.models if m not in external])
    except ValueError as error:
        problems.append(str(error))
    if config.one_program and not problems:  # the models resolve only with valid settings
        inner = [m for m in config.models if m in LEARNED
                 and LEARNED[m].configured(fit_settings(config))[1].inner_contexts]
        if inner:
            problems.append(f"one_program: {inner} select on inner held-out contexts "
                            f"(configuration '{config.configuration}'), trained one pool at a "
                            "time: train context by context, or use the configuration "
                            "'reconstruction'")
    if problems:
        raise RunValidationError("the run's settings", problems)
    adata = load_data(config)
    spec = config.spec
    contexts = list(config.held_out) or sorted(adata.obs[spec.context_key].astype(str).unique())
    raw_counts = config.counts and config.design == "single"
    problems = data_problems(adata, spec, contexts, config.held_out_conditions, raw_counts,
                             _batching(config), source=config.data)
    if problems:
        raise RunValidationError(f"data '{config.data}'", problems)
    return (normalize_log1p(adata) if raw_counts else adata), contexts


OUTPUTS = ("config.json", RUN_FILE, "metrics.csv", "coverage.csv", "summary.md", "ranking.csv",
           "checkpoints", "figures", "predictions", "responses")


def _table_config(config: OODConfig, cells: Cells) -> OODConfig:
    """The configuration of the whole table (`config.json`): this invocation's settings, with
    every model and held-out context of the workdir's cells and of this invocation."""
    models = tuple(dict.fromkeys([*cells.done, *config.models]))
    contexts = tuple(dict.fromkeys([*cells.contexts(), *config.held_out]))
    return dataclasses.replace(config, models=models,
                               held_out=contexts if config.held_out else ())


def held_out_split(adata: ad.AnnData, config: OODConfig, context: str) -> HoldOut:
    """The context held out, the never-seen conditions removed from training, the HVGs of
    the training pool kept."""
    split = hold_out(adata, config.spec, context)
    if config.held_out_conditions:
        unseen = split.train.obs[config.spec.condition_key].astype(str).isin(
            config.held_out_conditions).to_numpy()
        split = dataclasses.replace(split, train=split.train[~unseen].copy())
    return select_hvgs(split, config.n_top_genes)


def run(config: OODConfig, workdir: str | Path, overwrite: bool = False,
        external: Mapping[str, ExternalModel] | None = None,
        merge_from: Sequence[str | Path] = (),
        merge_models: Collection[str] | None = None) -> OODResults:
    """Run the benchmark and write its outputs into `workdir` (see the module docstring).

    Everything is checked before anything is written (`check_run`); a workdir holding another
    table (other data or shared settings) is refused unless `overwrite`. The workdir's table
    grows cell by cell, a cell being one (model, held-out context): a done cell whose model
    resolves to the same schedule is read back, not trained again (`ood_cells`), and the
    tables and summary cover every done cell. `run.json` records progress: a run stopped
    midway keeps every finished cell, and its summary names the contexts missing. Models
    named in `external` are trained by their own `predict` (`ExternalModel`). The done cells
    of the workdirs in `merge_from`, parts of the same table filled apart, are merged in
    first (`merge_cells`; with `merge_models`, those models' cells only); a source may still
    be running. The workdir is held for the run
    (`hold_workdir`): a run in a workdir that another process holds is refused."""
    workdir, external = Path(workdir), dict(external or {})
    sources = [Path(p) for p in merge_from]
    adata, contexts = check_run(config, workdir, external)
    with hold_workdir(workdir):
        return _run_held(config, workdir, sources, adata, contexts, overwrite, external,
                         merge_models)


def _run_held(config: OODConfig, workdir: Path, sources: list[Path], adata: ad.AnnData,
              contexts: list[str], overwrite: bool, external: dict[str, ExternalModel],
              merge_models: Collection[str] | None) -> OODResults:
    """`run`, once its inputs are checked and its workdir held."""
    fingerprint = run_fingerprint(config, adata)
    claim_workdir(workdir, fingerprint, OUTPUTS, overwrite)
    for model, context in merge_cells(workdir, sources, fingerprint, merge_models):
        logger.info("merged the cell (%s, %s)", model, context)
    schedules = model_schedules(config, external)
    cells = Cells.read(workdir, schedules, overwrite)
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, _table_config(config, cells))
    encoding = ConditionEncoding.from_adata(adata, config.spec)
    truths: dict[str, ContextTruth] = {}
    scored, done = Scored(), []

    def truth_of(context: str) -> ContextTruth:
        if context not in truths:
            truths[context] = truth = ContextTruth.build(held_out_split(adata, config, context),
                                                         config, encoding)
            scored.add_context(context, truth.split.control.var_names,
                               {c: r.response.response for c, r in truth.references.items()},
                               truth.ceilings)
        return truths[context]

    def record(error: str | None = None) -> None:
        write_record(workdir, fingerprint, done, contexts[len(done):], error, cells.record())

    for context in cells.contexts():  # the table so far, read back
        for model in cells.models(context):
            truth_of(context)
            scored.add(_done_cell(model, context, cells, workdir))
    record()
    models = [*FLOOR_REFERENCES, *(m for m in config.models if m not in FLOOR_REFERENCES)]
    progress = Progress(len(contexts))
    try:
        fitted = (_fit_together(config, contexts, cells, truth_of, encoding, workdir, external)
                  if config.one_program else {})
        for i, context in enumerate(contexts):
            logger.info("held-out context %s (%d/%d)%s", context, i + 1, len(contexts),
                        f", about {progress.left(i)} left" if i else "")
            truth = truth_of(context)
            figures = {c: {} for c in truth.conditions}
            for j, model in enumerate(models):
                if cells.has(model, context):  # its file is read only for the figures
                    predictions = (_saved_predictions(model, truth, config, cells, workdir)
                                   if config.figures and model in config.models else None)
                else:
                    logger.info("held-out context %s: model %s (%d/%d)", context, model, j + 1,
                                len(models))
                    part, predictions = _new_cell(model, truth, config, encoding, workdir,
                                                  external, fitted.pop((model, context), None))
                    scored.add(part)
                    cells.add(model, context, schedules.get(model))
                    table = scored.table()
                    if not table.empty:  # a context's rows join once its floors are scored
                        write_csv(workdir / "metrics.csv", table)
                        record()
                if model in config.models and predictions is not None:
                    _first_seed(model, truth, predictions, figures)
            done.append(context)
            write_csv(workdir / "coverage.csv", scored.coverage())
            record()
            if config.figures:
                write_context_figures(truth.split, truth.references, figures, workdir)
            truths.pop(context)  # its real cells and PCA are no longer needed
    except BaseException as error:
        record(error=f"{type(error).__name__}: {error}")
        table = scored.table()
        if not table.empty:
            write_text(workdir / "summary.md", summarise(table, scored.coverage(),
                                                         missing=contexts[len(done):])[1])
        raise
    metrics, coverage = scored.table(), scored.coverage()
    write_config(workdir, _table_config(config, cells))
    write_csv(workdir / "metrics.csv", metrics)
    write_csv(workdir / "coverage.csv", coverage)
    ranking, summary = summarise(metrics, coverage)
    write_report(workdir, summary, {"ranking": ranking}, indexed={"ranking"})
    if config.figures:
        write_run_figures(metrics, ranking, workdir)
    return OODResults(metrics=metrics, coverage=coverage, ranking=ranking, summary=summary)
