"""Signature exposures from single-cell expression: per-signature ridge vs multi-task lasso.

The original code's protocol: CPM + log1p + per-gene
standardisation with statistics from the training cells only; models chosen by 10-fold CV
inside the training set, scored on validation; then train + validation merged, statistics
recomputed, models refit and the test set scored. Experiments: `random` (70/15/15),
`cluster` (whole KMeans clusters held out), `scaled_exposures` (as random, exposures also
CPM + log1p + standardised), and `leave_one_cluster_out` (every cluster once as the test
set). Beyond the original code: bootstrap intervals, a permutation baseline, selection
stability, and, on semi-synthetic data, gene recovery and catalogue reconstruction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax import plots
from perturbjax.data.preprocess import Standardiser, log_cpm
from perturbjax.studies.signatures.config import SignatureStudyConfig
from perturbjax.studies.signatures.data import load_data
from perturbjax.studies.signatures.fitting import (
    Evaluation,
    bootstrap_r2,
    cosine_rows,
    fit_models,
    scores,
)
from perturbjax.studies.signatures.genes import gene_tables, selection_frequency
from perturbjax.studies.signatures.report import summarise, write_results
from perturbjax.studies.signatures.splits import cluster_split, expression_clusters, random_split

logger = logging.getLogger("perturbjax")


def _targets(exposures: np.ndarray, train: np.ndarray, scaled: bool) -> np.ndarray:
    """Raw exposures, or (experiment 3) CPM + log1p + standardised with training stats."""
    if not scaled:
        return exposures
    logged = log_cpm(exposures)
    return Standardiser(logged[train])(logged)


def _evaluate(experiment: str, part: str, logged: np.ndarray, targets: np.ndarray,
              train: np.ndarray, test: np.ndarray, config: SignatureStudyConfig,
              catalogues: np.ndarray | None) -> Evaluation:
    start = time.perf_counter()
    fitted = fit_models(logged[train], targets[train], config)
    logger.info("%s / %s: fitted on %d cells in %.0f s", experiment, part, len(train),
                time.perf_counter() - start)
    predictions = fitted.predict(logged[test]) | {
        "training_mean": np.broadcast_to(targets[train].mean(axis=0), (len(test),
                                                                       targets.shape[1]))}
    return Evaluation(experiment, part, train, targets[test], predictions, fitted,
                      None if catalogues is None else catalogues[test])


def run_experiment(experiment: str, logged: np.ndarray, exposures: np.ndarray,
                   labels: np.ndarray, config: SignatureStudyConfig,
                   catalogues: np.ndarray | None) -> list[Evaluation]:
    """The original code's protocol for one experiment: validation scores of the training fit, test
    scores of the train + validation refit (statistics recomputed); for leave-one-cluster-out
    one fit per held-out cluster."""
    if experiment == "leave_one_cluster_out":
        return [_evaluate(experiment, f"cluster {c}", logged, exposures,
                          np.flatnonzero(labels != c), np.flatnonzero(labels == c), config,
                          catalogues) for c in np.unique(labels)]
    split = cluster_split(labels) if experiment == "cluster" else random_split(
        len(logged), config.seed)
    scaled = experiment == "scaled_exposures"
    train, merged = split["train"], np.concatenate([split["train"], split["validation"]])
    kept = None if scaled else catalogues     # reconstruction needs raw exposures
    return [
        _evaluate(experiment, "validation", logged, _targets(exposures, train, scaled), train,
                  split["validation"], config, kept),
        _evaluate(experiment, "test", logged, _targets(exposures, merged, scaled), merged,
                  split["test"], config, kept),
    ]


def _metric_rows(evaluation: Evaluation, signatures: list[str], config: SignatureStudyConfig,
                 profiles: np.ndarray | None) -> list[dict]:
    rows = []
    for model, predicted in evaluation.predictions.items():
        score = scores(evaluation.truth, predicted)
        low, high = bootstrap_r2(evaluation.truth, predicted, config.bootstrap, config.seed)
        row = {"experiment": evaluation.experiment, "part": evaluation.part, "model": model,
               "n_cells": len(evaluation.truth), "r2": score["r2"], "r2_low": low,
               "r2_high": high, "mse": score["mse"],
               "mse_over_variance": score["mse_over_variance"]}
        row |= {f"r2_{s}": v for s, v in zip(signatures, score["r2_per_signature"],
                                             strict=True)}
        if evaluation.catalogues is not None and profiles is not None:
            for column, exposures in (("catalogue_cosine", np.clip(predicted, 0, None)),
                                      ("catalogue_cosine_true_exposures", evaluation.truth)):
                row[column] = float(np.nanmean(cosine_rows(exposures @ profiles.T,
                                                           evaluation.catalogues)))
        rows.append(row)
    return rows


@dataclasses.dataclass
class SignatureResults:
    metrics: pd.DataFrame
    genes: pd.DataFrame
    stability: pd.DataFrame
    summary: str


def run(config: SignatureStudyConfig, workdir: str | Path) -> SignatureResults:
    """The study on its configured data (`load_data`); see `run_on`."""
    return run_on(load_data(config), config, workdir)


def run_on(adata: ad.AnnData, config: SignatureStudyConfig, workdir: str | Path
           ) -> SignatureResults:
    """Every configured experiment on counts with `obsm['exposures']`; writes `metrics.csv`,
    `genes.csv`, `top_genes.json`, `stability.csv`, `summary.md` and `figures/`."""
    if "exposures" not in adata.obsm:
        raise ValueError("adata.obsm['exposures'] (cells x signatures) is required")
    workdir = Path(workdir)
    exposure_table = adata.obsm["exposures"]
    signatures = list(exposure_table.columns)
    exposures = exposure_table.to_numpy(np.float64)
    counts = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X,
                        dtype=np.float64)
    logged = log_cpm(counts)
    gene_names = adata.var_names.to_numpy()
    truth = adata.uns.get("truth")
    profiles = adata.uns["profiles"].to_numpy() if "profiles" in adata.uns else None
    catalogues = (adata.obsm["catalogues"].to_numpy(np.float64)
                  if "catalogues" in adata.obsm else None)
    labels, silhouettes = expression_clusters(logged, config.n_pcs, config.max_clusters,
                                              config.seed)

    metrics, gene_parts, top_lists, evaluations = [], [], {}, []
    for experiment in config.experiments:
        for evaluation in run_experiment(experiment, logged, exposures, labels, config,
                                         catalogues):
            evaluations.append(evaluation)
            metrics += _metric_rows(evaluation, signatures, config, profiles)
            tops, table = gene_tables(evaluation, gene_names, signatures, truth, config.top_k)
            top_lists[f"{experiment} / {evaluation.part}"] = tops
            gene_parts.append(table.assign(experiment=experiment, part=evaluation.part))
    metrics = pd.DataFrame(metrics)
    genes = pd.concat(gene_parts, ignore_index=True)

    if "random" in config.experiments:
        metrics = pd.concat([metrics, _permutation_rows(logged, exposures, config, signatures)],
                            ignore_index=True)
        final = next(e for e in evaluations if e.experiment == "random" and e.part == "test")
        cells = np.sort(final.train)          # the refit's cells, in file order
        stability = selection_frequency(logged[cells], exposures[cells], final.fitted,
                                        top_lists["random / test"],
                                        gene_names[final.fitted.genes], signatures, config)
        plots.exposure_scatter(final.truth, final.predictions, signatures,
                               workdir / "figures" / "predicted_vs_true_random.png")
        plots.coefficient_heatmap(final.fitted.lasso.coef_, gene_names[final.fitted.genes],
                                  signatures, config.top_k,
                                  workdir / "figures" / "lasso_top_genes_random.png")
    else:
        stability = pd.DataFrame(columns=["set", "gene", "frequency"])
    summary = summarise(metrics, genes, stability, silhouettes, adata.uns.get("source", ""))
    write_results(workdir, config, summary, signatures, metrics, genes, stability, top_lists,
                  silhouettes)
    return SignatureResults(metrics, genes, stability, summary)


def _permutation_rows(logged: np.ndarray, exposures: np.ndarray,
                      config: SignatureStudyConfig, signatures: list[str]) -> pd.DataFrame:
    """The random experiment's test score when training exposures are shuffled across cells:
    the R^2 a model reaches with no real link between expression and exposure."""
    split = random_split(len(logged), config.seed)
    merged = np.concatenate([split["train"], split["validation"]])
    shuffled = exposures.copy()
    shuffled[merged] = exposures[np.random.default_rng(config.seed).permutation(merged)]
    evaluation = _evaluate("random_permuted", "test", logged, shuffled, merged, split["test"],
                           config, None)
    evaluation.truth = exposures[split["test"]]
    return pd.DataFrame(_metric_rows(evaluation, signatures, config, None))
