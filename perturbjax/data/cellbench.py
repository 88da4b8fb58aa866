"""CellBench (Tian et al. 2019) lung-adenocarcinoma cell lines: raw UMI counts of single cells."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.schema import DataValidationError

FIVE_LINE_PLATES = ("sc_celseq2_5cl_p1", "sc_celseq2_5cl_p2", "sc_celseq2_5cl_p3")
ALL_RUNS = (*FIVE_LINE_PLATES, "sc_celseq2", "sc_dropseq")
SYMBOLS_FILE = "gene_map/ensembl_to_symbol.tsv.gz"  # under the shared data folder


def read_gene_symbols(path: str | os.PathLike) -> pd.Series:
    """Ensembl ID -> HGNC symbol from a two-column TSV (`ensembl_id`, `symbol`)."""
    table = pd.read_csv(path, sep="\t")
    missing = {"ensembl_id", "symbol"} - set(table.columns)
    if missing:
        raise DataValidationError(f"{path}: missing columns {sorted(missing)}")
    return table.dropna().drop_duplicates("ensembl_id").set_index("ensembl_id")["symbol"]


def load_cellbench(data_dir: str | os.PathLike, names: Sequence[str] = FIVE_LINE_PLATES,
                   symbols: pd.Series | None = None) -> ad.AnnData:
    """Singlet cells (demuxlet class SNG) of the named CellBench runs, concatenated.

    Each run is `<name>.count.csv.gz` (genes x cells, Ensembl IDs in the first column) and
    `<name>.metadata.csv.gz` (`cell_line_demuxlet`, `demuxlet_cls`). Cell names are prefixed
    with the run so plates never collide; genes are those shared by every run. With `symbols`
    (see `read_gene_symbols`) `var['symbol']` holds the gene symbol, else the Ensembl ID.
    """
    parts = []
    for name in names:
        counts_path = Path(data_dir) / f"{name}.count.csv.gz"
        meta_path = Path(data_dir) / f"{name}.metadata.csv.gz"
        for path in (counts_path, meta_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: CellBench file not found")
        counts = pd.read_csv(counts_path, index_col=0)
        meta = pd.read_csv(meta_path, index_col=0)
        for column in ("cell_line_demuxlet", "demuxlet_cls"):
            if column not in meta.columns:
                raise DataValidationError(f"{meta_path}: missing column '{column}'")
        cells = meta.index[meta["demuxlet_cls"] == "SNG"].intersection(counts.columns)
        values = counts[cells].to_numpy(np.float32).T
        if not np.isfinite(values).all() or (values < 0).any():
            raise DataValidationError(f"{counts_path}: counts must be finite and non-negative")
        obs = pd.DataFrame({"cell_line": meta.loc[cells, "cell_line_demuxlet"].to_numpy(),
                            "run": name}, index=[f"{name}:{cell}" for cell in cells])
        parts.append(ad.AnnData(values, obs=obs, var=pd.DataFrame(index=counts.index)))
    adata = ad.concat(parts, join="inner")
    ids = adata.var_names.to_series()
    adata.var["symbol"] = ids.map(symbols).fillna(ids) if symbols is not None else ids
    adata.obs["cell_line"] = adata.obs["cell_line"].astype("category")
    return adata
