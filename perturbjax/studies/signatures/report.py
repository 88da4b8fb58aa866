"""The signature study's report: the summary, its figures and its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from perturbjax import plots
from perturbjax.files import write_text
from perturbjax.studies.report import markdown_table, write_config, write_report


def summarise(metrics: pd.DataFrame, genes: pd.DataFrame, stability: pd.DataFrame,
              silhouettes: dict[int, float], source: str) -> str:
    """A markdown report: test tables per experiment, gene recovery, stability."""
    test = metrics[~metrics["part"].eq("validation")]
    columns = ["r2", "r2_low", "r2_high", "mse", "mse_over_variance"] + (
        ["catalogue_cosine", "catalogue_cosine_true_exposures"]
        if "catalogue_cosine" in metrics else [])
    overall = test.groupby(["experiment", "model"], sort=False)[columns].mean()
    per_signature = test.groupby(["experiment", "model"], sort=False)[
        [f"r2_{s}" for s in genes["signature"].unique()]].mean()
    recovery = [c for c in ("ridge_top_precision", "lasso_top_precision",
                            "lasso_selected_recall") if c in genes]
    lines = [f"# Signature exposures from expression\n\nData: {source}\n",
             "## Test metrics (leave-one-cluster-out: mean over clusters)\n",
             markdown_table(overall), "\n## R^2 per signature (test)\n",
             markdown_table(per_signature),
             "\n## Chosen penalties, selected genes, Jaccard of top genes\n",
             markdown_table(genes[genes["part"].ne("validation")].groupby(
                 ["experiment", "signature"], sort=False)[
                 ["ridge_alpha", "lasso_alpha", "lasso_selected_genes",
                  "jaccard_with_lasso_top", *recovery]].mean())]
    if len(stability):
        lines += ["\n## Selection frequency of the random experiment's top genes "
                  "(bootstrap refits)\n",
                  markdown_table(stability.groupby("set", sort=False)["frequency"].mean()
                                 .to_frame("mean frequency"))]
    lines += ["\n## Silhouette by number of clusters\n",
              markdown_table(pd.Series(silhouettes, name="silhouette").rename_axis("k")
                             .to_frame())]
    return "\n".join(lines) + "\n"


def write_results(workdir: Path, config: Any, summary: str, signatures: list[str],
                  metrics: pd.DataFrame, genes: pd.DataFrame, stability: pd.DataFrame,
                  top_lists: dict, silhouettes: dict[int, float]) -> None:
    """The per-signature and silhouette figures, then `metrics.csv`, `genes.csv`,
    `stability.csv`, `top_genes.json`, `config.json` and `summary.md`."""
    plots.grouped_bars(metrics[metrics["part"].isin(["test"])], signatures,
                       workdir / "figures" / "r2_per_signature.png")
    plots.line(silhouettes, "clusters (k)", "silhouette",
               workdir / "figures" / "silhouette_by_k.png")
    write_text(workdir / "top_genes.json", json.dumps(top_lists, indent=1))
    write_config(workdir, config)
    write_report(workdir, summary, {"metrics": metrics, "genes": genes, "stability": stability})
