"""Expression-level scores: common DEGs (scanpy t-test) and R^2 of per-gene means.

DEG calls use scanpy's `rank_genes_groups`, so they match what a scanpy user would compute.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc


def _labelled(control: np.ndarray, groups: dict[str, np.ndarray], genes) -> ad.AnnData:
    blocks = [control, *groups.values()]
    labels = ["control"] * len(control)
    for name, block in groups.items():
        labels += [name] * len(block)
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32),
                       obs=pd.DataFrame({"label": pd.Categorical(labels)},
                                        index=[str(i) for i in range(len(labels))]),
                       var=pd.DataFrame(index=pd.Index(genes).astype(str)))
    adata.uns["log1p"] = {"base": None}
    return adata


def wilcoxon(control: np.ndarray, group: np.ndarray, genes) -> pd.DataFrame:
    """scanpy's Wilcoxon test of `group` against `control` alone (see `ranked_genes`)."""
    return ranked_genes(control, {"group": group}, genes, "wilcoxon")["group"]


def ranked_genes(control: np.ndarray, groups: dict[str, np.ndarray], genes,
                 method: str) -> dict[str, pd.DataFrame]:
    """scanpy `rank_genes_groups(groupby='label', reference='control')` for each group.

    Returns, per group, a frame of gene names and scores sorted by score (descending).
    """
    adata = _labelled(control, groups, genes)
    # scanpy also computes log fold changes, which we never read: log2 of a mean at or
    # below zero (a prediction with negative values) warns there, about nothing we use.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", "invalid value encountered in log2",
                                RuntimeWarning)
        sc.tl.rank_genes_groups(adata, "label", groups=list(groups), reference="control",
                                method=method, n_genes=adata.n_vars)
    return {g: sc.get.rank_genes_groups_df(adata, g)[["names", "scores"]] for g in groups}


def top_genes(frame: pd.DataFrame, n: int, by_abs: bool = False) -> list[str]:
    """The n genes with the highest score (or |score|)."""
    key = frame["scores"].abs() if by_abs else frame["scores"]
    order = np.argsort(-key.to_numpy(), kind="stable")
    return frame["names"].to_numpy()[order[:n]].tolist()


def common_degs(control: np.ndarray, real: np.ndarray, pred: np.ndarray, genes,
                n_top: int = 100) -> dict[str, int]:
    """|top-n(real) ∩ top-n(pred)| of t-test DEGs against control, computed on the union.

    `degs` ranks by score (up-regulated first, the original code's metric); `degs_abs` by |score|.
    """
    ranked = ranked_genes(control, {"real": real, "pred": pred}, genes, "t-test")
    out = {}
    for key, by_abs in (("degs", False), ("degs_abs", True)):
        a = set(top_genes(ranked["real"], n_top, by_abs))
        b = set(top_genes(ranked["pred"], n_top, by_abs))
        out[key] = len(a & b)
    return out


def r2_of_means(real: np.ndarray, pred: np.ndarray) -> float:
    """Squared Pearson correlation between the per-gene means of two groups."""
    return _r2_of_mean_vectors(real.mean(0), pred.mean(0))


def _r2_of_mean_vectors(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1] ** 2)


def r2_subsampled(real: np.ndarray, pred: np.ndarray, n_draws: int = 100,
                  fraction: float = 0.8, seed: int = 0) -> float:
    """Mean R^2 of per-gene means over `n_draws` draws of `fraction` of each group's cells."""
    return float(np.mean(_subsampled_r2(real, pred, {"all": slice(None)}, n_draws, fraction,
                                        seed)["all"]))


def _subsampled_r2(real: np.ndarray, pred: np.ndarray, subsets: dict, n_draws: int,
                   fraction: float, seed: int) -> dict[str, list[float]]:
    """R^2 of each draw's means on each gene subset; one set of draws serves every subset."""
    rng = np.random.default_rng(seed)
    n_real, n_pred = max(1, int(fraction * len(real))), max(1, int(fraction * len(pred)))
    real_pick = np.zeros((n_draws, len(real)), np.float32)
    pred_pick = np.zeros((n_draws, len(pred)), np.float32)
    for draw in range(n_draws):  # the draws of the two groups alternate, as they always have
        real_pick[draw, rng.choice(len(real), n_real, replace=False)] = 1.0 / n_real
        pred_pick[draw, rng.choice(len(pred), n_pred, replace=False)] = 1.0 / n_pred
    # Each draw's means as one selection-matrix product, not `n_draws` copies of the cells.
    real_means = real_pick @ np.asarray(real, np.float32)
    pred_means = pred_pick @ np.asarray(pred, np.float32)
    out = {name: [] for name in subsets}
    for a, b in zip(real_means, pred_means, strict=True):
        for name, idx in subsets.items():
            out[name].append(_r2_of_mean_vectors(a[idx], b[idx]))
    return out


def deg_subsets(wilcoxon: pd.DataFrame, genes,
                tops: tuple[int, ...] = (20, 100)) -> dict[str, np.ndarray]:
    """Gene index sets for R^2: all genes, and the top-n genes by Wilcoxon score of real vs
    control (`wilcoxon`: a frame of `ranked_genes`), up-regulated first as in the original code."""
    genes = pd.Index(genes).astype(str)
    subsets = {"all": np.arange(len(genes))}
    for n in tops:
        subsets[f"top{n}"] = genes.get_indexer(top_genes(wilcoxon, n))
    return subsets


def r2_scores(real: np.ndarray, pred: np.ndarray, subsets: dict[str, np.ndarray],
              n_draws: int = 100, seed: int = 0) -> dict[str, float]:
    """R^2 of per-gene means on each gene subset (`deg_subsets`), plain (`r2_all`,
    `r2_top20`, ...) and as the mean over `n_draws` subsamples of 80% of cells (`..._sub`)."""
    out = {f"r2_{name}": r2_of_means(real[:, idx], pred[:, idx])
           for name, idx in subsets.items()}
    for name, draws in _subsampled_r2(real, pred, subsets, n_draws, 0.8, seed).items():
        out[f"r2_{name}_sub"] = float(np.mean(draws))
    return out


def top_effect_genes(effects: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` genes with the largest mean |effect| over the rows (contexts): the
    PerturbX paper's top DEGs, chosen on the response across all lines."""
    return np.argsort(-np.abs(effects).mean(axis=0), kind="stable")[:n]


def mean_effect_scores(control_mean: np.ndarray, true_effect: np.ndarray,
                       pred_effect: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """How well one context's mean effect is predicted.

    r2: squared Pearson correlation of the post-perturbation mean profiles (control mean +
    effect) over the `top` genes, the convention of this project's R^2 (scGen's);
    r2_effect: coefficient of determination of the effect itself over the `top` genes
    (scikit-learn's `r2_score`; stricter, as the control level is not shared credit);
    mse: mean squared error of the effect over `top` (equal to that of the profiles);
    mse_all: the same over every gene.
    """
    real, pred = control_mean[top] + true_effect[top], control_mean[top] + pred_effect[top]
    residual = ((true_effect[top] - pred_effect[top]) ** 2).sum()
    total = ((true_effect[top] - true_effect[top].mean()) ** 2).sum()
    return {
        "r2": float(np.corrcoef(real, pred)[0, 1] ** 2) if pred.std() > 0 else float("nan"),
        "r2_effect": float(1.0 - residual / total) if total > 0 else float("nan"),
        "mse": float(((true_effect[top] - pred_effect[top]) ** 2).mean()),
        "mse_all": float(((true_effect - pred_effect) ** 2).mean()),
    }
