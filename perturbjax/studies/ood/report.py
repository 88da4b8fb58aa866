"""The OOD benchmark's report: the summary's tables, both rankings and the figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from perturbjax import plots
from perturbjax.data.splits import HoldOut
from perturbjax.files import safe_name
from perturbjax.metrics import HeldOutReference, penalty_ranking
from perturbjax.metrics.calibration import CALIBRATED, CEILING, floor_models
from perturbjax.metrics.conformal import fewest_contexts
from perturbjax.metrics.distances import DISTANCES
from perturbjax.metrics.response import RESPONSE_METRICS, mean_response
from perturbjax.models import floor_references
from perturbjax.studies.ood.rows import floor_rows
from perturbjax.studies.report import markdown_table, mean_sd_table

# The response metrics (`metrics.response`), led by the discrimination across contexts.
RESPONSE_SUMMARY = [*RESPONSE_METRICS, "discrimination"]
HEADLINE = ["pearson_delta_top100", "r2_delta_top100", "degs_robust"]  # per-context tables
# The source documents' metrics and ranking.
RANKED_METRICS = ["degs", "r2_all", "r2_top20", "r2_top100", *DISTANCES]
SUMMARY_METRICS = ["degs", "degs_abs", "r2_all", "r2_top20", "r2_top100", "r2_top100_sub",
                   "edistance", "edistance_ratio", "euclidean", "mmd_rbf", "wasserstein"]
HELD_OUT_DOSE_METRICS = ["mse_means", "r2_all", "r2_top100", "euclidean", "edistance"]
def write_context_figures(split: HoldOut, references: dict[str, HeldOutReference],
                   first_seed: dict[str, dict[str, np.ndarray]], workdir: Path) -> None:
    """Per condition: predicted vs real response per gene, per-gene means and a PCA of
    control, real and predicted cells (the first seed of each model)."""
    for condition, predictions in first_seed.items():
        ref = references[condition]
        tag = safe_name(f"{split.context}_{condition}")
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


def _mean_sd_table(metrics: pd.DataFrame, columns: list[str], order) -> pd.DataFrame:
    return mean_sd_table(metrics, "model", columns, order)


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
    floors = pd.DataFrame({m: floor_models(metrics, m, floor_rows())
                           for m in ["pearson_delta", *HEADLINE, "discrimination"]})
    return floors.reset_index()


def coverage_section(coverage: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """The summary's part on the conformal intervals of the mean response: coverage and
    width per model and level (mean ± sd over contexts and conditions), beside the
    uncalibrated seed spread's."""
    if coverage.empty:
        return []
    columns = [c for c in ("coverage", "mean_width", "seed_spread_coverage",
                           "seed_spread_mean_width") if c in coverage]
    lowest = coverage.groupby(["model", "level"], sort=False)["coverage"].min()
    table = mean_sd_table(coverage.assign(level=coverage["level"].map("{:.0%}".format)),
                          ["model", "level"], columns)
    table.insert(1, "lowest_coverage", [f"{v:.3f}" for v in lowest.to_numpy()])
    models = [*order, *sorted(set(coverage["model"]) - set(order))]
    table = table.loc[[key for m in models for key in table.index if key[0] == m]]
    fewest = {f"{level:.0%}": fewest_contexts(level) for level in sorted(coverage["level"])}
    calibrating = int(coverage["calibration_contexts"].min())
    short = [level for level, n in fewest.items() if calibrating < n]
    return [
        "## Conformal intervals of the mean response",
        "Per gene, d_P ± the ceil(level (K+1))-th smallest absolute residual |d_R - d_P| of "
        f"the same gene on the K = {calibrating} other held-out contexts (their leave-one-out "
        "predictions). `coverage` is the share of genes whose real response lies inside; if "
        "the contexts are exchangeable its expectation is at least the level on each "
        "context. Its mean over the table's contexts is fixed by construction (each gene is "
        "covered on exactly ceil(level N) of the N contexts), so only its spread across "
        "contexts is evidence: a context covered far less than the others is unlike them. "
        "The seed spread (d_P ± z sd over seeds) is NOT calibrated and is shown for "
        "comparison."
        + (f" With K = {calibrating}, no finite interval has the guarantee at {short} (it "
           f"needs K ≥ {[fewest[level] for level in short]}): those widths are infinite and "
           "their coverage is 1 by construction." if short else ""),
        markdown_table(table.reset_index().set_index(["model", "level"])),
    ]


def _partial_models(metrics: pd.DataFrame) -> list[str]:
    """A line naming the models scored on fewer contexts than the table holds, if any: their
    means are over their own contexts, not comparable with the others' as they stand."""
    contexts = list(dict.fromkeys(metrics["context"]))
    held = metrics.groupby("model", sort=False)["context"].agg(set)
    partial = [f"{model} (missing {[c for c in contexts if c not in mine]})"
               for model, mine in held.items() if len(mine) < len(contexts)]
    return ([f"**Models not scored on every context**: {', '.join(partial)}. Their means are "
             "over their own contexts; compare them with the others per context (below)."]
            if partial else [])


# The headline table: the response first (mean, DEGs, telling contexts apart), then the
# distance of the predicted cells to the real ones.
TABLE_HEADLINE = ["pearson_delta_top100", "degs_robust", "discrimination", "edistance"]


def headline_table(metrics: pd.DataFrame) -> str:
    """The table's headline as markdown: per model, the number of contexts it was scored on
    and the mean over them of each `TABLE_HEADLINE` metric (each context weighs the same),
    best pearson_delta_top100 first; the replicate ceiling last. README quotes it."""
    per_context = metrics.groupby(["model", "context"])[TABLE_HEADLINE].mean()
    table = per_context.groupby("model").mean()
    table.insert(0, "contexts", per_context.groupby("model").size())
    if "configuration" in metrics.columns:  # what each row ran, so none reads as another
        table.insert(0, "configuration", metrics.groupby("model")["configuration"].first())
    table = table.sort_values("pearson_delta_top100", ascending=False)
    ceiling = (metrics.drop_duplicates(["context", "condition"])
               .groupby("context")[[m + CEILING for m in TABLE_HEADLINE]].mean().mean())
    table.loc["replicate ceiling"] = [""] * (len(table.columns) - len(ceiling)) + ceiling.to_list()
    return markdown_table(table.rename(columns={"edistance": "E-distance"}))


def summarise(metrics: pd.DataFrame, coverage: pd.DataFrame | None = None,
              missing: Sequence[str] = ()) -> tuple[pd.DataFrame, str]:
    """Rankings (`rankings`) and a markdown summary: the calibrated response metrics first
    (mean ± sd per model, per context), then the conformal intervals' coverage, then the
    source documents' metrics. Conditions held out of training everywhere are left out of
    the rankings and get a table of their own. `missing`: contexts of a stopped run that
    have no rows (named at the top)."""
    held = (metrics["held_out_condition"].astype(bool) if "held_out_condition" in metrics
            else pd.Series(False, index=metrics.index))
    main = metrics[~held]
    ranking = rankings(main)
    calibrated = [m + CALIBRATED for m in RESPONSE_SUMMARY]
    parts = [
        "# OOD benchmark summary",
        *([f"**Partial run**: contexts {list(missing)} are missing (see run.json)."]
          if missing else []),
        *_partial_models(main),
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
        f"trivial references {list(floor_references())} on that context. Ceiling: half of the "
        "real perturbed cells as a prediction of the other half (mean over random splits). "
        "0 = no better than a trivial reference, 1 = as good as a replicate of the real "
        "cells, < 0 = worse than a trivial reference; blank where the ceiling is no better "
        "than the floor.",
        "## Headline: mean over each model's contexts (last row: the replicate ceiling)",
        headline_table(main),
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
    if coverage is not None:
        parts += coverage_section(coverage, ranking.index)
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


def write_run_figures(metrics: pd.DataFrame, ranking: pd.DataFrame, workdir: Path) -> None:
    """The run's metric bars and the calibrated score per model and held-out context."""
    main = metrics[~metrics["held_out_condition"]]
    plots.metric_bars(main, SUMMARY_METRICS, workdir / "figures" / "metric_bars.png")
    plots.score_heatmaps(
        {m: main.pivot_table(index="model", columns="context", values=m + CALIBRATED)
         .reindex(ranking.index) for m in HEADLINE},
        workdir / "figures" / "calibrated_heatmap.png",
        title="calibrated score per model and held-out context (0: best trivial "
              "reference, 1: replicate ceiling)")
