"""Single-cell expression with per-cell mutational-signature exposures, in the original code's form.

The original study reads two tables: an expression count matrix (genes x cells, gene IDs in the
first column) and an exposure matrix (cells x signatures, cell IDs in the first column),
aligned by cell ID. Here they become one AnnData: X = counts (cells x genes) and
`obsm['exposures']`, a DataFrame of the exposures with the signatures as columns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.schema import DataValidationError

logger = logging.getLogger("perturbjax")


def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    sep = "\t" if path.name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    table = pd.read_csv(path, sep=sep, index_col=0)
    if table.index.has_duplicates:
        duplicated = table.index[table.index.duplicated()].unique()[:5].tolist()
        raise DataValidationError(f"{path}: duplicated IDs in the first column: {duplicated}")
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise DataValidationError(f"{path}: non-numeric columns {non_numeric[:5]} in the {what}")
    return table


def _check_values(table: pd.DataFrame, path: Path, what: str) -> None:
    """Finite and non-negative, or an error naming the first offending cell and column."""
    values = table.to_numpy(np.float64)
    for bad, expectation in ((~np.isfinite(values), "finite"), (values < 0, "non-negative")):
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise DataValidationError(
                f"{path}: {what} must be {expectation}; row '{table.index[row]}', "
                f"column '{table.columns[column]}' holds {values[row, column]}")


def load_expression_exposures(expression_path: str | os.PathLike,
                              exposures_path: str | os.PathLike) -> ad.AnnData:
    """Counts (genes x cells) and exposures (cells x signatures) aligned by cell ID.

    Cells present in only one table are dropped with a warning that names them; no shared
    cell, negative or non-finite counts or exposures, and duplicated IDs are errors.
    """
    expression_path, exposures_path = Path(expression_path), Path(exposures_path)
    counts = _read_table(expression_path, "expression").T      # cells x genes
    exposures = _read_table(exposures_path, "exposure")
    counts.index = counts.index.astype(str)
    exposures.index = exposures.index.astype(str)
    _check_values(exposures, exposures_path, "exposures")
    _check_values(counts, expression_path, "counts")
    shared = counts.index.intersection(exposures.index, sort=False)
    if shared.empty:
        raise DataValidationError(f"{expression_path} and {exposures_path} share no cell ID")
    for table, path in ((counts, expression_path), (exposures, exposures_path)):
        unmatched = table.index.difference(shared)
        if len(unmatched):
            logger.warning("%s: %d cells without a match in the other table are dropped: %s%s",
                           path, len(unmatched), ", ".join(unmatched[:10]),
                           " ..." if len(unmatched) > 10 else "")
    adata = ad.AnnData(counts.loc[shared].to_numpy(np.float32),
                       obs=pd.DataFrame(index=shared), var=pd.DataFrame(index=counts.columns))
    adata.obsm["exposures"] = exposures.loc[shared].astype(np.float64)
    adata.uns["source"] = f"{expression_path} + {exposures_path}"
    return adata


def load_signature_profiles(path: str | os.PathLike, signatures: list[str]) -> pd.DataFrame:
    """The named columns (96 contexts x signatures) of a COSMIC SBS matrix (TSV, `Type` first)."""
    table = pd.read_csv(path, sep="\t", index_col=0)
    missing = [s for s in signatures if s not in table.columns]
    if missing:
        raise DataValidationError(f"{path}: signatures {missing} not in the matrix")
    return table[signatures]
