"""The out-of-distribution benchmark: hold out each context, predict its perturbed cells.

`run(config, workdir)` is the whole study as a library call: load and validate the data, for
every held-out context train each learned model (all seeds as one vmapped program), predict
from the context's control cells, score every prediction against the real perturbed cells and
write the metrics table, a markdown summary with the penalty ranking, figures, checkpoints and
the resolved configuration into `workdir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax import plots
from perturbjax.data import (
    PerturbationSpec,
    SyntheticConfig,
    hold_out,
    load_h5ad,
    make_perturbation_data,
    normalize_log1p,
    select_hvgs,
    validate,
)
from perturbjax.data.splits import HoldOut
from perturbjax.files import markdown_table, write_csv, write_text
from perturbjax.metrics import HeldOutReference, evaluate_prediction, penalty_ranking
from perturbjax.metrics.distances import DISTANCES
from perturbjax.models import LEARNED, REFERENCES, check_model_names
from perturbjax.models.fitting import ConditionEncoding, fit_on_anndata, predict_anndata

log = logging.getLogger("perturbjax")

RANKED_METRICS = ["degs", "r2_all", "r2_top20", "r2_top100", *DISTANCES]
SUMMARY_METRICS = ["degs", "degs_abs", "r2_all", "r2_top20", "r2_top100", "r2_top100_sub",
                   "edistance", "edistance_ratio", "euclidean", "mmd_rbf", "wasserstein"]


@dataclasses.dataclass(frozen=True)
class OODConfig:
    """Everything that defines one benchmark run.

    `data` is "synthetic" (the embedded generator, configured by `synthetic`) or the path of
    an h5ad file whose obs columns are named by the three keys. `held_out` empty means every
    context. `epochs` overrides the model configuration's epoch count.
    """

    data: str = "synthetic"
    context_key: str = "cell_type"
    condition_key: str = "condition"
    control_value: str = "control"
    counts: bool = False
    n_top_genes: int | None = None
    held_out: tuple[str, ...] = ()
    models: tuple[str, ...] = ("mtae", "control", "mean_shift")
    configuration: str = "default"
    seeds: tuple[int, ...] = (1, 2, 19193)
    epochs: int | None = None
    checkpoint_every: int = 25
    synthetic: SyntheticConfig = SyntheticConfig()
    figures: bool = True

    @property
    def spec(self) -> PerturbationSpec:
        return PerturbationSpec(self.context_key, self.condition_key, self.control_value)


@dataclasses.dataclass
class OODResults:
    """The metrics table (one row per model, context, condition, seed) and the ranking."""

    metrics: pd.DataFrame
    ranking: pd.DataFrame
    summary: str


def load_dataset(config: OODConfig) -> ad.AnnData:
    """The configured data set, validated and log-normalised."""
    if config.data == "synthetic":
        adata = make_perturbation_data(config.synthetic)
        validate(adata, config.spec, held_out=config.held_out or None, source="synthetic")
    else:
        adata = load_h5ad(config.data, config.spec, held_out=config.held_out or None)
    return normalize_log1p(adata) if config.counts else adata


Predictions = dict[str, list[np.ndarray]]  # condition -> one (cells x genes) array per seed


def _predict_reference(model: str, split: HoldOut, config: OODConfig,
                       conditions: list[str]) -> tuple[Predictions, list[dict]]:
    """A deterministic reference: one prediction per condition, no seed."""
    return {c: [REFERENCES[model](split, config.spec, c)] for c in conditions}, [{"seed": None}]


def _predict_learned(model: str, split: HoldOut, config: OODConfig, encoding: ConditionEncoding,
                     conditions: list[str], workdir: Path) -> tuple[Predictions, list[dict]]:
    """Train every seed of a learned model as one program, then predict each condition."""
    family = LEARNED[model]
    model_config, train_config = family.config(config.configuration)
    if config.epochs is not None:
        train_config = dataclasses.replace(train_config, epochs=config.epochs)
    train_config = dataclasses.replace(train_config, checkpoint_every=config.checkpoint_every)
    objective = family.build(model_config, split.train.n_vars, len(encoding.labels))
    started = time.perf_counter()
    result = fit_on_anndata(
        objective, train_config, split.train, config.spec, encoding, config.seeds,
        workdir=workdir / "checkpoints" / model / split.context,
        fingerprint={"model": model, "configuration": config.configuration,
                     "model_config": dataclasses.asdict(model_config)},
    )
    seconds = time.perf_counter() - started
    runs = [{"seed": seed, "epochs_run": result.epochs_run, "best_epoch": int(best) + 1,
             "learning_rate": float(lr), "train_seconds": seconds}
            for seed, best, lr in zip(result.seeds, result.best_epoch, result.learning_rate,
                                      strict=True)]
    predictions = {c: [p.X for p in predict_anndata(objective, result, split.control,
                                                    config.spec, encoding, c)]
                   for c in conditions}
    return predictions, runs


def _write_figures(split: HoldOut, references: dict[str, HeldOutReference],
                   first_seed: dict[str, dict[str, np.ndarray]], workdir: Path) -> None:
    for condition, predictions in first_seed.items():
        ref = references[condition]
        tag = f"{split.context}_{condition}".replace("/", "_").replace(" ", "_")
        title = f"held out {split.context}, {condition}"
        plots.mean_scatter(ref.real, predictions, ref.subsets["top100"],
                           workdir / "figures" / f"means_{tag}.png", title=title)
        projected = {name: ref.pca.transform(p) for name, p in predictions.items()}
        plots.embedding_scatter({"control": ref.control_pcs, "real": ref.real_pcs, **projected},
                                workdir / "figures" / f"pca_{tag}.png",
                                title=f"{title} (PCA of real cells)")


def _evaluate_context(split: HoldOut, config: OODConfig, encoding: ConditionEncoding,
                      workdir: Path) -> list[dict]:
    """Predict with every model on one held-out context and score each prediction."""
    condition_of = split.truth.obs[config.condition_key].astype(str)
    conditions = [c for c in encoding.labels
                  if c != str(config.control_value) and (condition_of == c).any()]
    references = {
        c: HeldOutReference.build(split.control.X, split.truth.X[(condition_of == c).to_numpy()],
                                  split.control.var_names)
        for c in conditions
    }
    rows, first_seed = [], {c: {} for c in conditions}
    for model in config.models:
        if model in REFERENCES:
            predictions, runs = _predict_reference(model, split, config, conditions)
        else:
            predictions, runs = _predict_learned(model, split, config, encoding, conditions,
                                                 workdir)
        for condition, per_seed in predictions.items():
            first_seed[condition][model] = per_seed[0]
            for run_info, pred in zip(runs, per_seed, strict=True):
                scores = evaluate_prediction(references[condition], pred,
                                             seed=run_info["seed"] or 0)
                rows.append({"model": model, "context": split.context, "condition": condition,
                             **run_info, **scores})
    if config.figures:
        _write_figures(split, references, first_seed, workdir)
    return rows


def summarize(metrics: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Penalty ranking and a markdown summary (mean ± sd per model)."""
    ranking = penalty_ranking(metrics, RANKED_METRICS)
    stats = metrics.groupby("model")[SUMMARY_METRICS].agg(["mean", "std"])
    table = pd.DataFrame(index=stats.index)
    for metric in SUMMARY_METRICS:
        mean, sd = stats[(metric, "mean")], stats[(metric, "std")].fillna(0.0)
        table[metric] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd, strict=True)]
    table = table.loc[ranking.index]
    per_context = {m: metrics.pivot_table(index="context", columns="model", values=m)
                   for m in ("edistance", "r2_top100")}
    text = "\n\n".join([
        "# OOD benchmark summary",
        f"{metrics['context'].nunique()} held-out contexts, "
        f"{metrics['seed'].dropna().nunique()} seeds. Mean ± sd over contexts, conditions and "
        "seeds (references are deterministic: one row per context). Distances are raw "
        "d(real, pred) in a 50-PC PCA fitted on real cells; `_ratio` is "
        "d(real, pred) / d(control, pred).",
        "## Metrics", markdown_table(table),
        "## Penalty ranking (lower is better)",
        markdown_table(ranking[["penalty", "rank"]]),
        "## E-distance per held-out context (mean over seeds and conditions)",
        markdown_table(per_context["edistance"]),
        "## R² over the top-100 DEGs per held-out context",
        markdown_table(per_context["r2_top100"]),
    ])
    return ranking, text + "\n"


def run(config: OODConfig, workdir: str | Path) -> OODResults:
    """Run the benchmark and write its outputs into `workdir` (see the module docstring)."""
    check_model_names(config.models)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(workdir / "config.json",
               json.dumps(dataclasses.asdict(config), indent=2, default=str))
    adata = load_dataset(config)
    spec = config.spec
    contexts = list(config.held_out) or sorted(adata.obs[spec.context_key].astype(str).unique())
    encoding = ConditionEncoding.from_adata(adata, spec)
    rows = []
    for i, context in enumerate(contexts):
        log.info("held-out context %s (%d/%d)", context, i + 1, len(contexts))
        split = select_hvgs(hold_out(adata, spec, context), config.n_top_genes)
        rows += _evaluate_context(split, config, encoding, workdir)
        write_csv(workdir / "metrics.csv", pd.DataFrame(rows))
    metrics = pd.DataFrame(rows)
    ranking, summary = summarize(metrics)
    write_text(workdir / "summary.md", summary)
    write_csv(workdir / "ranking.csv", ranking, index=True)
    if config.figures:
        plots.metric_bars(metrics, SUMMARY_METRICS, workdir / "figures" / "metric_bars.png")
    return OODResults(metrics=metrics, ranking=ranking, summary=summary)
