"""Which genes each signature model relies on: its top genes, the two models' agreement,
the recovery of known genes and the top genes' stability under bootstrap refits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perturbjax.linear import MultiTaskLasso, ridge_fit
from perturbjax.studies.signatures.config import SignatureStudyConfig
from perturbjax.studies.signatures.fitting import Evaluation, Fitted


def top_genes(ridge_coef: np.ndarray, lasso_coef: np.ndarray, gene_names: np.ndarray,
              signatures: list[str], k: int) -> dict[str, list[str]]:
    """Ridge: top-k |coefficient| per signature; lasso: top-k by sum of |coefficients|."""
    tops = {s: gene_names[np.argsort(-np.abs(ridge_coef[i]))[:k]].tolist()
            for i, s in enumerate(signatures)}
    tops["multitask_lasso"] = gene_names[np.argsort(-np.abs(lasso_coef).sum(axis=0))[:k]].tolist()
    return tops


def jaccard(a: list[str], b: list[str]) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def selection_frequency(logged: np.ndarray, targets: np.ndarray, fitted: Fitted,
                        tops: dict[str, list[str]], gene_names: np.ndarray,
                        signatures: list[str], config: SignatureStudyConfig) -> pd.DataFrame:
    """How often each reported top gene is again in the top-k when both models are refit
    at their chosen penalties on bootstrap resamples of the training cells."""
    rng = np.random.default_rng(config.seed + 1)
    counts = {key: dict.fromkeys(genes, 0) for key, genes in tops.items()}
    lasso_path = fitted.lasso.alphas_[fitted.lasso.alphas_ >= fitted.lasso.alpha_]
    ridge_alphas = np.broadcast_to(fitted.ridge.alpha_, len(signatures))
    for _ in range(config.stability):
        rows = rng.integers(0, len(logged), len(logged))
        x = fitted.features(logged[rows])
        ridge_coef, _ = ridge_fit(x, targets[rows], ridge_alphas)
        lasso = MultiTaskLasso(fitted.lasso.alpha_, tol=config.tol).fit(
            x, targets[rows], alpha_path=lasso_path)
        again = top_genes(ridge_coef, lasso.coef_, gene_names, signatures, config.top_k)
        for key, genes in tops.items():
            for gene in genes:
                counts[key][gene] += gene in again[key]
    return pd.DataFrame([{"set": key, "gene": gene, "frequency": n / config.stability}
                         for key, genes in counts.items() for gene, n in genes.items()])


def gene_tables(evaluation: Evaluation, gene_names: np.ndarray, signatures: list[str],
                 truth: dict[str, list[str]] | None, k: int
                 ) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """Top genes, Jaccard of each ridge top-k with the lasso's, recovery of the true genes."""
    names = gene_names[evaluation.fitted.genes]
    tops = top_genes(evaluation.fitted.ridge.coef_, evaluation.fitted.lasso.coef_, names,
                     signatures, k)
    lasso_top = tops["multitask_lasso"]
    selected = names[np.abs(evaluation.fitted.lasso.coef_).sum(axis=0) > 0]
    rows = []
    for s in signatures:
        row = {"signature": s, "jaccard_with_lasso_top": jaccard(tops[s], lasso_top),
               "overlap": ", ".join(sorted(set(tops[s]) & set(lasso_top)))}
        if truth is not None:
            row["ridge_top_precision"] = len(set(tops[s]) & set(truth[s])) / k
            row["lasso_top_precision"] = len(set(lasso_top) & set(truth[s])) / k
            row["lasso_selected_recall"] = len(set(selected) & set(truth[s])) / len(truth[s])
        rows.append(row)
    table = pd.DataFrame(rows)
    table["ridge_alpha"] = np.broadcast_to(evaluation.fitted.ridge.alpha_, len(signatures))
    table["lasso_alpha"] = evaluation.fitted.lasso.alpha_
    table["lasso_selected_genes"] = len(selected)
    return tops, table
