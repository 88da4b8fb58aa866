"""The PerturbX study's report: Table 1 (mean ± sd over seeds), the summary and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from perturbjax import plots
from perturbjax.data.bags import BagData
from perturbjax.models import effect_references as refs
from perturbjax.nn.concrete import CONVERGED
from perturbjax.studies.perturbx.config import PerturbXStudyConfig
from perturbjax.studies.report import markdown_table, mean_sd_table, write_config, write_report

MODEL = "PerturbX"
REFERENCES = ("mean effect", "status mean effect", "nearest lines", "ridge")
METRICS = ("r2", "r2_effect", "mse", "mse_all")


def summarise(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1: per model, the mean over held-out lines (all / WT / MUT) within each seed,
    then mean and sd over seeds (references are deterministic: one 'seed'); and the means."""
    parts = {"": scores, " WT": scores[scores["status"] == "WT"],
             " MUT": scores[scores["status"] == "MUT"]}
    per_seed = pd.concat(
        [part.groupby(["model", "seed"])[list(METRICS)].mean().add_suffix(suffix)
         for suffix, part in parts.items()], axis=1)
    columns = ["r2", "r2 WT", "r2 MUT", "r2_effect", "r2_effect WT", "r2_effect MUT",
               "mse", "mse_all"]
    table = mean_sd_table(per_seed.reset_index(), "model", columns, [MODEL, *REFERENCES],
                          digits=4)
    return table, per_seed.groupby("model")[columns].mean()


def write_results(results: dict[str, pd.DataFrame], bags: BagData, status: np.ndarray,
                  test_contexts: list[np.ndarray], predictions: np.ndarray,
                  latents: np.ndarray, top: np.ndarray, config: PerturbXStudyConfig,
                  workdir: Path) -> str:
    """Tables, the paper's figures and summary.md (returned); every file written atomically."""
    ranking, separation = results["ranking"], results["separation"]
    head = ranking.head(config.n_top_genes)
    lines = [f"# PerturbX: {bags.perturbations[0]} on {len(bags.contexts)} cell lines", "",
             f"{len(test_contexts)} folds stratified by '{config.status_key}', seeds "
             f"{list(config.seeds)}; R² / MSE on the top {config.n_top_degs} DEGs.", "",
             "## Held-out lines (mean over lines within a seed; mean ± sd over seeds)", "",
             markdown_table(results["table"].set_index("model")), "",
             "## Aggregated latents vs status", "",
             markdown_table(separation.set_index("seed")), "",
             f"## Top {config.n_top_genes} genes (Shapley on PC1, mean over models)", "",
             markdown_table(head.set_index("gene"), floatfmt="{:.4f}"), ""]
    if "in_programme" in head:
        lines += [f"Precision of the top {config.n_top_genes} against the true programme: "
                  f"{head['in_programme'].mean():.2f}.", ""]
    diagnostics = results["diagnostics"]
    lines += ["Selector mean max probability (1 = every slot one gene): "
              f"{diagnostics['selector_mean_max_probability'].min():.3f}-"
              f"{diagnostics['selector_mean_max_probability'].max():.3f} (the reference's "
              f"convergence, >= {CONVERGED}, reached by "
              f"{int(diagnostics['selector_converged'].sum())}/{len(diagnostics)} models; "
              "evaluation reads each slot's distinct argmax either way); Shapley "
              f"({diagnostics['shapley_permutations'].iloc[0]} permutations) converged for "
              f"{int(diagnostics['shapley_converged'].sum())}/{len(diagnostics)} models "
              f"(max relative SE {diagnostics['shapley_max_relative_se'].max():.3f}).", ""]

    figures = workdir / "figures"
    fold0 = np.flatnonzero(np.isin(bags.row_context, test_contexts[0]))
    train0 = np.flatnonzero(~np.isin(bags.row_context, test_contexts[0]))
    baseline = refs.mean_effect(bags.targets[train0], 1)[0]
    for label, want in (("responsive", True), ("non_responsive", False)):
        rows = [r for r in fold0 if status[bags.row_context[r]] == want]
        if rows:
            row = rows[0]
            plots.effect_scatter(bags.targets[row], {MODEL: predictions[0][row],
                                                     "mean effect": baseline},
                                 top, figures / f"effect_{label}.png",
                                 title=f"{bags.contexts[bags.row_context[row]]} "
                                       f"({'WT' if want else 'MUT'}), fold 0")
    z = latents[0] - latents[0].mean(0)
    pcs = z @ np.linalg.svd(z, full_matrices=False)[2][:2].T
    row_status = status[bags.row_context]
    held = np.isin(bags.row_context, test_contexts[0])
    plots.embedding_scatter({"WT": pcs[row_status & ~held], "MUT": pcs[~row_status & ~held],
                             "WT (held out)": pcs[row_status & held],
                             "MUT (held out)": pcs[~row_status & held]},
                            figures / "latents_pca.png",
                            title="aggregated latents, fold 0 seed 0", size=30)
    plots.importance_bars(ranking.head(20), figures / "gene_importance.png")
    plots.metric_bars(results["scores"], list(METRICS), figures / "scores.png")
    write_config(workdir, config)
    write_report(workdir, "\n".join(lines),
                 {name: results[name] for name in ("scores", "table", "separation", "ranking",
                                                   "diagnostics")})
    return "\n".join(lines)
