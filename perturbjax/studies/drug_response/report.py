"""The drug-response study's summaries, tables and figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from perturbjax import plots
from perturbjax.data.gdsc import DrugResponse
from perturbjax.drug.grid import GridPoint
from perturbjax.studies.drug_response.config import GPDS_NAMES, GRIDS, DrugStudyConfig
from perturbjax.studies.report import markdown_table, mean_sd_table, write_config, write_report


def _overlap(a: pd.Series, b: pd.Series, k: int, largest: bool) -> int:
    pick = (lambda s: s.nlargest(k)) if largest else (lambda s: s.nsmallest(k))
    return len(set(pick(a).index) & set(pick(b).index))


def summarise_transfer(transfer: pd.DataFrame) -> pd.DataFrame:
    """For each prediction column: Spearman with the measured response over lines, and MAE."""
    columns = [c for c in transfer.columns if c not in ("line", "measured", "n_cells")]
    return pd.DataFrame(
        {"spearman": [spearmanr(transfer["measured"], transfer[c])[0] for c in columns],
         "mae": [float(np.abs(transfer[c] - transfer["measured"]).mean()) for c in columns]},
        index=pd.Index(columns, name="prediction"))


def summarise_gpds(gpds: pd.DataFrame, k: int) -> pd.DataFrame:
    """Agreement of the two rankings: Spearman over genes and shared top / bottom genes."""
    pcc, net = gpds.set_index("gene")["pcc"], gpds.set_index("gene")["network"]
    k = min(k, len(gpds) // 2)
    return pd.DataFrame([{"spearman": spearmanr(pcc, net)[0], "k": k,
                          "shared_resistance_top_k": _overlap(pcc, net, k, True),
                          "shared_sensitivity_top_k": _overlap(pcc, net, k, False),
                          "expected_by_chance": k * k / len(gpds)}],
                        index=pd.Index(["pcc vs network"], name="rankings"))


def summarise_dreep(dreep: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per line: median ES and sensitive / resistant call fractions for each GPDS;
    per GPDS: Spearman of the ES with the measured response, over line medians and cells)."""
    rows = []
    for line, part in dreep.groupby("cell_line", sort=True):
        row = {"line": line, "measured": part["measured"].iloc[0], "n_cells": len(part)}
        for name in GPDS_NAMES:
            row[f"median_es_{name}"] = part[f"es_{name}"].median()
            row[f"sensitive_{name}"] = (part[f"call_{name}"] < 0).mean()
            row[f"resistant_{name}"] = (part[f"call_{name}"] > 0).mean()
        rows.append(row)
    per_line = pd.DataFrame(rows).set_index("line")
    agreement = pd.DataFrame(
        {"spearman_line_medians": [spearmanr(per_line["measured"],
                                             per_line[f"median_es_{n}"])[0] for n in GPDS_NAMES],
         "spearman_cells": [spearmanr(dreep["measured"], dreep[f"es_{n}"])[0]
                            for n in GPDS_NAMES],
         "n_lines": len(per_line), "n_cells": len(dreep)},
        index=pd.Index(GPDS_NAMES, name="gpds"))
    return per_line, agreement


def write_results(results: dict[str, pd.DataFrame], bulk: DrugResponse,
                  config: DrugStudyConfig, final_point: GridPoint, workdir: Path) -> str:
    """Tables, figures and summary.md (returned); every file written atomically."""
    metrics = ["r2", "mse", "pearson", "spearman"]
    cv, grid = results["cv"], results["grid"]
    lines = [f"# Drug response study: {bulk.drug} ({bulk.measure})", "",
             f"Features: {config.features}; grid '{config.grid}' ({grid['point'].nunique()} "
             f"points); {config.folds}-fold x {config.repeats} repeats over cell lines, "
             f"nested selection on {config.inner_validation:.0%} of each training set; "
             f"seeds {list(config.seeds)}.", "",
             "## Cross-validated, held-out cell lines (mean ± sd over outer folds)", "",
             markdown_table(mean_sd_table(cv, "model", metrics)), ""]
    by_point = grid.groupby("point").agg(
        inner_r2=("inner_r2", "mean"), outer_r2=("outer_r2", "mean"),
        diverged=("diverged", "sum"))
    described = pd.DataFrame([dataclasses.asdict(p) for p in GRIDS[config.grid]])
    by_point = described.join(by_point).sort_values("inner_r2", ascending=False)
    by_point.index.name = "point"
    lines += ["## Grid (fits on 80% of each outer training set; top 10 by inner R²)", "",
              markdown_table(by_point.head(10)), "",
              f"Best point by outer R² (optimistic, chosen on the test folds): "
              f"{by_point['outer_r2'].max():.3f}. Final configuration (best inner R²): "
              f"{final_point}.", ""]
    files = {"cv": cv, "grid": grid, "out_of_fold": results["out_of_fold"]}
    if "within_lineage" in results:
        lines += ["## Within one lineage (Spearman of out-of-fold predictions, lineages with "
                  ">= 20 lines)", "", markdown_table(results["within_lineage"]), ""]
        files["within_lineage"] = results["within_lineage"].reset_index()
    if "transfer" in results:
        transfer = results["transfer"]
        transfer_summary = summarise_transfer(transfer)
        gpds_summary = summarise_gpds(results["gpds"], config.top_genes)
        dreep_lines, dreep_summary = summarise_dreep(results["dreep"])
        lines += ["## Transfer to single cells (held-out lines)", "",
                  markdown_table(transfer.set_index("line")), "",
                  markdown_table(transfer_summary), "",
                  "## GPDS: Pearson vs network (integrated gradients)", "",
                  markdown_table(gpds_summary), "",
                  "## DREEP-style single-cell enrichment (ES > 0: resistant)", "",
                  markdown_table(dreep_lines), "",
                  "Agreement with the measured response (a resistant-looking cell should "
                  "come from a line with a high ln IC50, so positive is right):", "",
                  markdown_table(dreep_summary), ""]
        files |= {"transfer": transfer, "cells": results["cells"], "gpds": results["gpds"],
                  "dreep": results["dreep"], "transfer_summary": transfer_summary.reset_index(),
                  "gpds_summary": gpds_summary.reset_index(),
                  "dreep_summary": dreep_summary.reset_index()}
        cells = results["cells"]
        by_line = {line: cells.loc[cells["cell_line"] == line, "mlp"].to_numpy()
                   for line in transfer["line"]}
        indexed = transfer.set_index("line")
        plots.prediction_densities(by_line, indexed["measured"].to_dict(),
                                   workdir / "figures" / "cell_predictions.png",
                                   marks={"bulk": indexed["bulk_mlp"].to_dict(),
                                          "pseudo-bulk": indexed["pseudobulk_mlp"].to_dict()})
        gpds = results["gpds"]
        plots.scatter(gpds["pcc"], gpds["network"], "Pearson GPDS", "network GPDS (IG)",
                      workdir / "figures" / "gpds.png")
        dreep = results["dreep"]
        plots.boxes({f"ES, {name} GPDS": {line: part[f"es_{name}"].to_numpy()
                                           for line, part in dreep.groupby("cell_line")}
                     for name in GPDS_NAMES}, "enrichment score",
                    workdir / "figures" / "dreep_es.png")
    plots.metric_bars(cv, metrics, workdir / "figures" / "cv.png")
    write_config(workdir, config)
    write_report(workdir, "\n".join(lines), files)
    return "\n".join(lines)
