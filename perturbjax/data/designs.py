"""Loaders for the multi-dose and cross-species designs, in their published schemas.

- scVIDR's Nault 2021 liver file (`nault2021_multiDose.h5ad`): raw counts, obs `celltype`
  and numeric `Dose` (0 = control). `load_nault` applies the spec's filters (cells with at
  least 500 counts and 720 genes, genes in at least 100 cells), then normalize_total + log1p,
  and labels each cell's condition with its dose (`condition` = the dose as text, control
  '0'). Highly variable genes are chosen later, on each split's training pool only
  (`preprocess.select_hvgs`).
- scGen's species file (`train_species.h5ad`): log-normalised, obs `species` (the held-out
  unit) and `condition` in {unst, LPS6}.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from perturbjax.data.datasets import _checked, _read
from perturbjax.data.schema import DataValidationError, PerturbationSpec

NAULT_SPEC = PerturbationSpec(context_key="celltype", condition_key="condition",
                              control_value="0", dose_key="Dose")
SPECIES_SPEC = PerturbationSpec(context_key="species", condition_key="condition",
                                control_value="unst")


@dataclasses.dataclass(frozen=True)
class CountFilters:
    """scVIDR's quality filters for the Nault data (the spec's values by default)."""

    min_counts: int = 500
    min_genes: int = 720
    min_cells: int = 100


def dose_label(dose: float) -> str:
    """A dose as a condition label: `0`, `0.01`, `30` (no trailing zeros)."""
    return np.format_float_positional(float(dose), trim="-")


def _check_counts(adata: ad.AnnData, source: str) -> None:
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if (values < 0).any() or not np.allclose(values, np.round(values)):
        raise DataValidationError(f"{source}: X must hold raw counts (non-negative integers); "
                                  "the multi-dose schema stores counts, not normalised values")


def label_doses(adata: ad.AnnData, dose_key: str = "Dose", source: str = "data") -> None:
    """Add obs `condition` = the dose as text, after checking the dose column."""
    if dose_key not in adata.obs.columns:
        raise DataValidationError(f"{source}: obs column '{dose_key}' is missing; expected the "
                                  f"numeric dose of each cell (columns: "
                                  f"{sorted(map(str, adata.obs.columns))})")
    dose = pd.to_numeric(adata.obs[dose_key], errors="coerce")
    if dose.isna().any() or (dose < 0).any():
        bad = adata.obs[dose_key][dose.isna() | (dose < 0)].astype(str).unique()[:3].tolist()
        raise DataValidationError(f"{source}: obs column '{dose_key}' must hold non-negative "
                                  f"numbers; found {bad}")
    adata.obs[dose_key] = dose.astype(float).to_numpy()
    adata.obs["condition"] = [dose_label(d) for d in dose]


def preprocess_counts(adata: ad.AnnData, filters: CountFilters | None) -> ad.AnnData:
    """The spec's cell and gene filters, then normalize_total + log1p (counts kept in
    `layers['counts']`). `filters=None` skips the filters."""
    adata = adata.copy()
    if filters is not None:
        sc.pp.filter_cells(adata, min_counts=filters.min_counts)
        sc.pp.filter_cells(adata, min_genes=filters.min_genes)
        sc.pp.filter_genes(adata, min_cells=filters.min_cells)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise DataValidationError(f"{adata.uns.get('source', 'data')}: nothing passes the "
                                  f"filters {filters}")
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def load_nault(path: str | os.PathLike, filters: CountFilters | None = CountFilters()
               ) -> ad.AnnData:
    """scVIDR's multi-dose file: filtered, log-normalised, dose-labelled, validated."""
    path = Path(path)
    adata = _read(path)
    _check_counts(adata, str(path))
    label_doses(adata, NAULT_SPEC.dose_key, str(path))
    adata.uns["source"] = str(path)
    return _checked(preprocess_counts(adata, filters), NAULT_SPEC, None, str(path))


def load_species(path: str | os.PathLike) -> ad.AnnData:
    """scGen's cross-species file (log-normalised), validated."""
    path = Path(path)
    return _checked(_read(path), SPECIES_SPEC, None, str(path))
