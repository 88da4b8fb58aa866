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
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data import select_hvgs
from perturbjax.data.fingerprint import content_hash
from perturbjax.data.splits import HoldOut, hold_out
from perturbjax.files import write_csv, write_text
from perturbjax.models import floor_references, get_model
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.peer import Predictions, RunRecords
from perturbjax.models.trained import TrainedModel, train_model, wrap
from perturbjax.progress import Progress
from perturbjax.studies.ood.cells import (
    Cells,
    cell_file,
    checkpoint_dir,
    merge_cells,
    table_fingerprint,
)
from perturbjax.studies.ood.checks import check_run
from perturbjax.studies.ood.config import OODConfig, fit_settings
from perturbjax.studies.ood.predictions import (
    read_predictions,
    read_responses,
    row_key,
    write_predictions,
    write_responses,
)
from perturbjax.studies.ood.report import summarise, write_context_figures, write_run_figures
from perturbjax.studies.ood.rows import labelled
from perturbjax.studies.ood.table import Scored
from perturbjax.studies.ood.truth import ContextTruth, score
from perturbjax.studies.report import write_config, write_report
from perturbjax.studies.run_record import (
    RUN_FILE,
    claim_workdir,
    hold_workdir,
    write_record,
)

logger = logging.getLogger("perturbjax")


@dataclasses.dataclass
class OODResults:
    """The metrics table (one row per model, context, condition, seed), the conformal
    intervals' coverage (one row per model, context, condition, level) and the ranking."""

    metrics: pd.DataFrame
    coverage: pd.DataFrame
    ranking: pd.DataFrame
    summary: str




def _new_cell(model: str, truth: ContextTruth, config: OODConfig,
              encoding: ConditionEncoding, workdir: Path, fitted: TrainedModel | None = None
              ) -> tuple[Scored, Predictions]:
    """Fit (unless it comes `fitted` with the other contexts) and predict one cell, write its
    predictions file, score what is read back from it and keep each row's predicted
    response."""
    split = truth.split
    decoded = sorted({d for _, _, d in truth.plan(model)})
    if fitted is None:
        fitted = train_model(model, TrainingPool(split.train, config.spec, encoding),
                             config.seeds, fit_settings(config),
                             checkpoint_dir(workdir, model, split.context), decoded)
    predictions = {c: fitted.predict_members(split.control, c) for c in decoded}
    runs = {c: fitted.runs(c) for c in decoded}
    saved = cell_file(workdir, "predictions", model, split.context)
    write_predictions(saved, split.control, config.spec.condition_key, model, predictions, runs)
    predictions = read_predictions(saved, config.spec.condition_key, runs)
    part = score(model, truth, predictions, runs)
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
                  workdir: Path) -> dict[tuple[str, str], TrainedModel]:
    """(model, context) -> its fit: each learned model's missing contexts trained as one
    program (`Model.fit_pools`), checkpointed under checkpoints/<model>/one_program."""
    fitted: dict[tuple[str, str], TrainedModel] = {}
    for model in config.models:
        missing = [c for c in contexts if not cells.has(model, c)]
        if get_model(model).role != "learned" or not missing:
            continue
        truths = {c: truth_of(c) for c in missing}
        decoded = {c: sorted({d for _, _, d in t.plan(model)}) for c, t in truths.items()}
        conditions = decoded[missing[0]]
        if (not get_model(model).decodes_unseen_conditions
                and any(d != conditions for d in decoded.values())):
            raise ValueError(f"model '{model}' trains one program per condition, and the "
                             f"held-out contexts decode different conditions {decoded}: "
                             "train it without one_program")
        logger.info("model %s: %d held-out contexts as one program", model, len(missing))
        pools = {c: TrainingPool(t.split.train, config.spec, encoding)
                 for c, t in truths.items()}
        settings = fit_settings(config)
        together = get_model(model).fit_pools(pools, config.seeds, settings,
                                              checkpoint_dir(workdir, model, "one_program"),
                                              conditions=conditions)
        fitted.update({(model, c): wrap(model, f, pools[c], settings)
                       for c, f in together.items()})
    return fitted


def model_schedules(config: OODConfig) -> dict[str, dict | None]:
    """Each model's resolved configuration and training schedule (None: a reference)."""
    settings = fit_settings(config)
    return {model: get_model(model).schedule(settings) for model in config.models}


def run_fingerprint(config: OODConfig, adata: ad.AnnData) -> dict:
    """What a workdir's table depends on: the settings every cell shares (the models, the
    held-out contexts and the figures aside: a table grows by both; nor whether contexts
    train as one program) and the content of the data (not the path's spelling). Each
    model's schedule, its configuration and epochs included, is recorded with its cells
    (`cells`)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("figures", "models", "held_out", "data", "one_program")}
    spec = config.spec
    return table_fingerprint({"config": settings, "data": content_hash(
        adata, [spec.context_key, spec.condition_key])})


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
        merge_from: Sequence[str | Path] = (),
        merge_models: Collection[str] | None = None) -> OODResults:
    """Run the benchmark and write its outputs into `workdir` (see the module docstring).

    Everything is checked before anything is written (`check_run`); a workdir holding another
    table (other data or shared settings) is refused unless `overwrite`. The workdir's table
    grows cell by cell, a cell being one (model, held-out context): a done cell whose model
    resolves to the same schedule is read back, not trained again (`cells`), and the
    tables and summary cover every done cell. `run.json` records progress: a run stopped
    midway keeps every finished cell, and its summary names the contexts missing. Any
    registered model runs, a peer of another package included (`models.peer`). The done cells
    of the workdirs in `merge_from`, parts of the same table filled apart, are merged in
    first (`merge_cells`; with `merge_models`, those models' cells only); a source may still
    be running. The workdir is held for the run
    (`hold_workdir`): a run in a workdir that another process holds is refused."""
    workdir = Path(workdir)
    sources = [Path(p) for p in merge_from]
    adata, contexts = check_run(config, workdir)
    with hold_workdir(workdir):
        return _run_held(config, workdir, sources, adata, contexts, overwrite, merge_models)


def _run_held(config: OODConfig, workdir: Path, sources: list[Path], adata: ad.AnnData,
              contexts: list[str], overwrite: bool, merge_models: Collection[str] | None
              ) -> OODResults:
    """`run`, once its inputs are checked and its workdir held."""
    fingerprint = run_fingerprint(config, adata)
    claim_workdir(workdir, fingerprint, OUTPUTS, overwrite, read=table_fingerprint)
    for model, context in merge_cells(workdir, sources, fingerprint, merge_models):
        logger.info("merged the cell (%s, %s)", model, context)
    schedules = model_schedules(config)
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

    def record(error: str | None = None, final: bool = False) -> None:
        """run.json; `complete` only once the last file of the run is written (`final`)."""
        write_record(workdir, fingerprint, done, contexts[len(done):], error, cells.record(),
                     pending=None if final else "the table's final files")

    for context in cells.contexts():  # the table so far, read back
        for model in cells.models(context):
            truth_of(context)
            scored.add(_done_cell(model, context, cells, workdir))
    record()
    floors = floor_references()
    models = [*floors, *(m for m in config.models if m not in floors)]
    progress = Progress(len(contexts))
    try:
        fitted = (_fit_together(config, contexts, cells, truth_of, encoding, workdir)
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
                                                  fitted.pop((model, context), None))
                    scored.add(part)
                    cells.add(model, context, schedules.get(model))
                    table = labelled(scored.table(), cells.schedules, fit_settings(config))
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
        table = labelled(scored.table(), cells.schedules, fit_settings(config))
        if not table.empty:
            write_text(workdir / "summary.md", summarise(table, scored.coverage(),
                                                         missing=contexts[len(done):])[1])
        raise
    metrics = labelled(scored.table(), cells.schedules, fit_settings(config))
    coverage = scored.coverage()
    write_config(workdir, _table_config(config, cells))
    write_csv(workdir / "metrics.csv", metrics)
    write_csv(workdir / "coverage.csv", coverage)
    ranking, summary = summarise(metrics, coverage)
    write_report(workdir, summary, {"ranking": ranking}, indexed={"ranking"})
    if config.figures:
        write_run_figures(metrics, ranking, workdir)
    record(final=True)
    return OODResults(metrics=metrics, coverage=coverage, ranking=ranking, summary=summary)
