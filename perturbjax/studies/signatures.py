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
import itertools
import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from perturbjax import plots
from perturbjax.data.preprocess import Standardiser, log_cpm
from perturbjax.errors import RunValidationError
from perturbjax.linear import MultiTaskLassoCV, RidgeCV
from perturbjax.linear.base import r2_per_target
from perturbjax.studies.signatures_data import load_data
from perturbjax.studies.signatures_genes import gene_tables, selection_frequency
from perturbjax.studies.signatures_report import summarise, write_results

logger = logging.getLogger("perturbjax")

EXPERIMENTS = ("random", "cluster", "scaled_exposures", "leave_one_cluster_out")
MODELS = ("ridge", "multitask_lasso")


@dataclasses.dataclass(frozen=True)
class SignatureStudyConfig:
    """Settings of the study; the defaults are the original code's, with a wider ridge grid.

    The data: the user's two tables (`expression`: counts, genes x cells; `exposures`: cells x
    signatures), or else the semi-synthetic set of `n_cells` cells built from the real parts
    in `data_dir` (default: $PERTURBJAX_DATA or ../shared/data). The original code used
    RidgeCV's default alphas (0.1, 1, 10), far too weak a penalty for ~2,000 standardised
    genes; here 13 values from 0.1 to 1e5 (the chosen alphas are reported).
    """

    expression: str | None = None
    exposures: str | None = None
    data_dir: str | None = None
    n_cells: int = 600

    experiments: tuple[str, ...] = EXPERIMENTS
    n_genes: int = 2000
    cv: int = 10
    ridge_alphas: tuple[float, ...] = tuple(np.logspace(-1, 5, 13))
    lasso_alphas: int = 100
    tol: float = 1e-4
    n_pcs: int = 40
    max_clusters: int = 10
    top_k: int = 10
    bootstrap: int = 1000
    stability: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        unknown = set(self.experiments) - set(EXPERIMENTS)
        if unknown:
            problems.append(f"experiments: unknown {sorted(unknown)}; choose from "
                            f"{list(EXPERIMENTS)}")
        if self.cv < 2:
            problems.append(f"cv: {self.cv}; expected at least 2 folds")
        for name in ("n_genes", "lasso_alphas", "bootstrap", "stability", "top_k"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)}; expected a positive number")
        if (self.expression is None) != (self.exposures is None):
            problems.append("expression, exposures: give both tables or neither")
        if problems:
            raise RunValidationError("SignatureStudyConfig", problems)


def random_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """70 / 15 / 15 train / validation / test indices."""
    order = np.random.default_rng(seed).permutation(n)
    cut1, cut2 = int(round(0.7 * n)), int(round(0.85 * n))
    return {"train": np.sort(order[:cut1]), "validation": np.sort(order[cut1:cut2]),
            "test": np.sort(order[cut2:])}


def expression_clusters(logged: np.ndarray, n_pcs: int, max_clusters: int, seed: int
                        ) -> tuple[np.ndarray, dict[int, float]]:
    """KMeans on the first PCs of standardised log-CPM, k (3..max) by the best silhouette.

    At least three clusters, so that train, validation and test can each get whole ones."""
    pcs = PCA(min(n_pcs, *logged.shape), random_state=seed).fit_transform(
        Standardiser(logged)(logged))
    labels, silhouettes = {}, {}
    for k in range(3, max(3, max_clusters) + 1):
        labels[k] = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs)
        silhouettes[k] = float(silhouette_score(pcs, labels[k]))
    best = max(silhouettes, key=silhouettes.get)
    return labels[best], silhouettes


def cluster_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Whole clusters to test and validation, each as close to 15% of cells as possible."""
    clusters, sizes = np.unique(labels, return_counts=True)
    if len(clusters) < 3:
        raise ValueError(f"a cluster-disjoint split needs at least 3 clusters; got "
                         f"{len(clusters)}")
    n, chosen = len(labels), {}
    remaining = list(range(len(clusters)))
    for part in ("test", "validation"):
        subsets = [s for r in range(1, len(remaining)) for s in
                   itertools.combinations(remaining, r)]
        best = min(subsets, key=lambda s: abs(sizes[list(s)].sum() / n - 0.15))
        chosen[part] = np.flatnonzero(np.isin(labels, clusters[list(best)]))
        remaining = [c for c in remaining if c not in best]
    chosen["train"] = np.flatnonzero(np.isin(labels, clusters[remaining]))
    return {part: chosen[part] for part in ("train", "validation", "test")}


@dataclasses.dataclass
class Fitted:
    """Both models fitted on one training set, and how its inputs were scaled."""

    genes: np.ndarray
    scaler: Standardiser
    ridge: RidgeCV
    lasso: MultiTaskLassoCV

    def features(self, logged: np.ndarray) -> np.ndarray:
        """The kept genes of log-CPM cells, standardised with the fitting cells' statistics."""
        return self.scaler(logged[:, self.genes])

    def predict(self, logged: np.ndarray) -> dict[str, np.ndarray]:
        """Exposures predicted by each model."""
        x = self.features(logged)
        return {"ridge": self.ridge.predict(x), "multitask_lasso": self.lasso.predict(x)}


def fit_models(logged: np.ndarray, targets: np.ndarray, config: SignatureStudyConfig
               ) -> Fitted:
    """Genes by variance on these cells, their scaling, then RidgeCV per target and
    MultiTaskLassoCV, both with `config.cv`-fold CV inside these cells."""
    genes = np.sort(np.argsort(logged.var(axis=0))[::-1][: config.n_genes])
    scaler = Standardiser(logged[:, genes])
    x = scaler(logged[:, genes])
    ridge = RidgeCV(config.ridge_alphas, cv=config.cv, alpha_per_target=True).fit(x, targets)
    lasso = MultiTaskLassoCV(alphas=config.lasso_alphas, cv=config.cv, tol=config.tol).fit(
        x, targets)
    return Fitted(genes, scaler, ridge, lasso)


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | np.ndarray]:
    """R^2 per signature and overall (their mean), MSE, MSE over the pooled variance."""
    per_signature = r2_per_target(truth, predicted)
    mse = float(((truth - predicted) ** 2).mean())
    return {"r2_per_signature": per_signature, "r2": float(per_signature.mean()),
            "mse": mse, "mse_over_variance": mse / float(truth.var())}


def bootstrap_r2(truth: np.ndarray, predicted: np.ndarray, n: int, seed: int
                 ) -> tuple[float, float]:
    """95% percentile interval of overall R^2 over test cells resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws = [scores(truth[i], predicted[i])["r2"]
             for i in (rng.integers(0, len(truth), len(truth)) for _ in range(n))]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.where(norms > 0, norms, np.nan)


@dataclasses.dataclass
class Evaluation:
    """One experiment on one test set: predictions (both models and the training-mean
    reference) and the fitted models."""

    experiment: str
    part: str
    train: np.ndarray
    truth: np.ndarray
    predictions: dict[str, np.ndarray]
    fitted: Fitted
    catalogues: np.ndarray | None


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
