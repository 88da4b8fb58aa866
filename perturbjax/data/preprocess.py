"""scanpy preprocessing that never looks at the held-out perturbed cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from perturbjax.data.splits import HoldOut


def normalize_log1p(adata: ad.AnnData, target_sum: float = 1e4) -> ad.AnnData:
    """Raw counts -> log1p(normalize_total). Per-cell, so it leaks nothing across cells.

    The counts are kept in `layers['counts']`.
    """
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if (values < 0).any():
        raise ValueError(f"{adata.uns.get('source', 'data')}: X has negative values; "
                         "expected raw counts for normalize_total")
    adata = adata.copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    return adata


def select_hvgs(split: HoldOut, n_top_genes: int | None) -> HoldOut:
    """Keep the `n_top_genes` most variable genes of the TRAINING pool in every part.

    The held-out perturbed cells (`split.truth`) take no part in the choice. `None` or a number
    at least the gene count keeps every gene.
    """
    if n_top_genes is None or n_top_genes >= split.train.n_vars:
        return split
    stats = sc.pp.highly_variable_genes(split.train, n_top_genes=n_top_genes, inplace=False)
    keep = split.train.var_names[stats["highly_variable"].to_numpy()]
    return HoldOut(
        context=split.context,
        train=split.train[:, keep].copy(),
        control=split.control[:, keep].copy(),
        truth=split.truth[:, keep].copy(),
    )


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """log1p of counts per million, cell by cell (rows): the original CPM + log1p on arrays."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(counts / np.where(totals > 0, totals, 1.0) * 1e6)


class Standardiser:
    """Per-column centring and scaling with statistics of the training rows only (float64),
    results in `dtype`. A column constant on those rows (sd under 10 x float64's epsilon,
    scikit-learn's StandardScaler rule) is centred and left unscaled."""

    def __init__(self, train: np.ndarray, dtype: type = np.float64):
        train = np.asarray(train, np.float64)
        self.mean = train.mean(axis=0)
        scale = train.std(axis=0)
        self.scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
        self.dtype = dtype

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, np.float64) - self.mean) / self.scale).astype(self.dtype)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Standardised values back in the training rows' units (float64)."""
        return np.asarray(values, np.float64) * self.scale + self.mean

