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
from pathlib import Path

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
from perturbjax.metrics.calibration import (
    CEILING,
    FLOOR_REFERENCES,
    Ceiling,
    add_discrimination,
    calibrate,
)
from perturbjax.metrics.conformal import LEVELS, leave_one_context_out
from perturbjax.metrics.evaluate import evaluation_ceiling
from perturbjax.metrics.response import mean_response
from perturbjax.models import LEARNED, REFERENCES, Batching, FitSettings, check_model_names
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.ot import PairingConfig
from perturbjax.progress import Progress
from perturbjax.studies.ood_checks import config_problems, data_problems
from perturbjax.studies.ood_data import load_data
from perturbjax.studies.ood_predictions import read_predictions, write_predictions
from perturbjax.studies.ood_report import (
    NEAREST,
    summarise,
    write_context_figures,
    write_run_figures,
)
from perturbjax.studies.report import write_config, write_report
from perturbjax.studies.run_record import RUN_FILE, claim_workdir, write_record

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
    """The metrics table (one row per model, context, condition, seed), the conformal
    intervals' coverage (one row per model, context, condition, level) and the ranking."""

    metrics: pd.DataFrame
    coverage: pd.DataFrame
    ranking: pd.DataFrame
    summary: str


Predictions = dict[str, list[np.ndarray]]  # condition -> one (cells x genes) array per seed
RunRecords = dict[str, list[dict]]  # condition -> per seed: the fit's bookkeeping (epochs, seconds)


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
                     conditions: list[str], workdir: Path) -> tuple[Predictions, RunRecords]:
    """Train every seed of a learned model as one program, then predict each condition."""
    fitted = LEARNED[model].fit(TrainingPool(split.train, config.spec, encoding), config.seeds,
                                fit_settings(config), workdir / "checkpoints" / model /
                                split.context, conditions=conditions)
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
class Scored:
    """The rows of a run so far, and what the run-level scores need besides them: each row's
    predicted response, per (context, condition) the real response and the ceiling, and each
    context's genes (HVGs chosen per training pool may differ between contexts)."""

    rows: list[dict] = dataclasses.field(default_factory=list)
    predicted: list[np.ndarray] = dataclasses.field(default_factory=list)
    real: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    ceilings: dict[tuple[str, str], Ceiling] = dataclasses.field(default_factory=dict)
    genes: dict[str, pd.Index] = dataclasses.field(default_factory=dict)

    def add(self, other: Scored) -> None:
        """Append the rows and responses of another part of the run (one finished context)."""
        self.rows += other.rows
        self.predicted += other.predicted
        self.real.update(other.real)
        self.ceilings.update(other.ceilings)
        self.genes.update(other.genes)

    def _on_common_genes(self) -> Scored:
        """The responses restricted to the genes every context has, in one order: what the
        scores across contexts compare gene by gene."""
        common = sorted(set.intersection(*(set(g) for g in self.genes.values())))
        columns = {c: genes.get_indexer(common) for c, genes in self.genes.items()}
        contexts = [row["context"] for row in self.rows]
        return Scored(
            self.rows, [p[columns[c]] for p, c in zip(self.predicted, contexts, strict=True)],
            {key: r[columns[key[0]]] for key, r in self.real.items()},
            {key: dataclasses.replace(ceiling, predicted=ceiling.predicted[:, columns[key[0]]],
                                      real=ceiling.real[:, columns[key[0]]])
             for key, ceiling in self.ceilings.items()},
            {c: pd.Index(common) for c in self.genes})

    def table(self) -> pd.DataFrame:
        """The metrics table: discrimination across the contexts so far (on their common
        genes), every score calibrated between its floor and its ceiling."""
        common = self._on_common_genes()
        metrics = add_discrimination(pd.DataFrame(self.rows), dict(enumerate(common.predicted)),
                                     common.real, common.ceilings)
        names = [c[: -len(CEILING)] for c in metrics.columns if c.endswith(CEILING)]
        return calibrate(metrics, names)

    def coverage(self, levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
        """Per (model, condition): the conformal interval's coverage and width on each
        context, calibrated on the other contexts' leave-one-out residuals, beside the
        uncalibrated seed spread's (`metrics.conformal.leave_one_context_out`)."""
        common = self._on_common_genes()
        rows = pd.DataFrame(self.rows)
        tables = []
        for (model, condition), group in rows.groupby(["model", "condition"], sort=False):
            if group["context"].nunique() < 2:
                continue
            members = {c: np.stack([common.predicted[i] for i in part.index])
                       for c, part in group.groupby("context")}
            table = leave_one_context_out(
                {c: m.mean(axis=0) for c, m in members.items()},
                {c: common.real[(c, condition)] for c in members}, members, levels)
            tables.append(table.assign(model=model, condition=condition))
        if not tables:
            return pd.DataFrame()
        table = pd.concat(tables, ignore_index=True)
        return table[["model", "condition", *table.columns.drop(["model", "condition"])]]


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
    scored.genes[split.context] = pd.Index(split.control.var_names.astype(str))
    for c in conditions:
        scored.real[(split.context, c)] = references[c].response.response
        scored.ceilings[(split.context, c)] = ceilings[c]
    first_seed = {c: {} for c in conditions}
    models = [*config.models, *(m for m in FLOOR_REFERENCES if m not in config.models)]
    for j, model in enumerate(models):
        logger.info("held-out context %s: model %s (%d/%d)", split.context, model, j + 1,
                    len(models))
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
        saved = workdir / "predictions" / model / f"{split.context}.h5ad"
        write_predictions(saved, split.control, config.spec.condition_key, model, predictions,
                          runs)
        predictions = read_predictions(saved, config.spec.condition_key, runs)
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
        write_context_figures(split, references, first_seed, workdir)
    return scored


def _batching(config: OODConfig) -> dict[str, Batching]:
    """How each learned model of the run consumes its training pool."""
    return {model: LEARNED[model].batching(fit_settings(config))
            for model in config.models if model in LEARNED}


def run_fingerprint(config: OODConfig, adata: ad.AnnData) -> dict:
    """What a workdir's results depend on: the configuration (figures aside), each learned
    model's resolved configuration and schedule, and the content of the data."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "figures"}
    schedules = {}
    for model in config.models:
        if model in LEARNED:
            model_config, train_config = LEARNED[model].configured(fit_settings(config))
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
           "checkpoints", "figures", "predictions")


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
    write_config(workdir, config)
    write_record(workdir, fingerprint, [], contexts)
    spec = config.spec
    encoding = ConditionEncoding.from_adata(adata, spec)
    scored, done, progress = Scored(), [], Progress(len(contexts))
    try:
        for i, context in enumerate(contexts):
            logger.info("held-out context %s (%d/%d)%s", context, i + 1, len(contexts),
                        f", about {progress.left(i)} left" if i else "")
            split = hold_out(adata, spec, context)
            if config.held_out_conditions:
                unseen = split.train.obs[spec.condition_key].astype(str).isin(
                    config.held_out_conditions).to_numpy()
                split = dataclasses.replace(split, train=split.train[~unseen].copy())
            split = select_hvgs(split, config.n_top_genes)
            scored.add(_evaluate_context(split, config, encoding, workdir))
            done.append(context)
            write_csv(workdir / "metrics.csv", scored.table())
            write_csv(workdir / "coverage.csv", scored.coverage())
            write_record(workdir, fingerprint, done, contexts[len(done):])
    except BaseException as error:
        write_record(workdir, fingerprint, done, contexts[len(done):],
                     error=f"{type(error).__name__}: {error}")
        if done:
            write_text(workdir / "summary.md",
                       summarise(scored.table(), scored.coverage(),
                                 missing=contexts[len(done):])[1])
        raise
    metrics, coverage = scored.table(), scored.coverage()
    ranking, summary = summarise(metrics, coverage)
    write_report(workdir, summary, {"ranking": ranking}, indexed={"ranking"})
    if config.figures:
        write_run_figures(metrics, ranking, workdir)
    return OODResults(metrics=metrics, coverage=coverage, ranking=ranking, summary=summary)
