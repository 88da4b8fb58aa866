"""MIX-seq (McFarland et al. 2020): pooled cell lines, one 10x folder per experiment.

Each experiment folder (e.g. `DMSO_24hr_expt1`, `Idasanutlin_24hr_expt1`) holds a 10x matrix
(`matrix.mtx`, `genes.tsv` or `features.tsv`, `barcodes.tsv`, optionally gzipped) and
`classifications.csv`, the SNP demultiplexing of each barcode: `singlet_ID` (the CCLE name of
the cell line, e.g. `NCIH226_LUNG`) and `cell_quality` (`normal`, `doublet`, `low_quality`).
`load_mixseq` keeps the normal-quality singlets and returns raw counts with obs
`cell_line`, `condition` (the drug named by the folder's first word) and `experiment`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd
import scanpy as sc

from perturbjax.data.gdsc import line_key
from perturbjax.data.schema import DataValidationError, PerturbationSpec

CLASSIFICATIONS = "classifications.csv"
NEEDED_COLUMNS = ("barcode", "singlet_ID", "cell_quality")
MIXSEQ_SPEC = PerturbationSpec(context_key="cell_line", condition_key="condition",
                               control_value="DMSO")


def condition_of(experiment: str) -> str:
    """The drug of an experiment folder: its name up to the first underscore."""
    return experiment.split("_", 1)[0]


def read_classifications(folder: Path) -> pd.DataFrame:
    """The demultiplexing table of one experiment, checked for the columns the loader uses."""
    path = folder / CLASSIFICATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cell-line annotation table")
    table = pd.read_csv(path)
    missing = [c for c in NEEDED_COLUMNS if c not in table.columns]
    if missing:
        raise DataValidationError(f"{path}: missing columns {missing}; expected "
                                  f"{list(NEEDED_COLUMNS)} (MIX-seq classifications)")
    if table["barcode"].duplicated().any():
        raise DataValidationError(f"{path}: barcodes listed twice, e.g. "
                                  f"{table.loc[table['barcode'].duplicated(), 'barcode'].iloc[0]}")
    return table


def read_experiment(folder: str | os.PathLike, quality: str = "normal") -> ad.AnnData:
    """One experiment's cells of the given quality (with a cell-line call), raw counts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such MIX-seq experiment folder")
    try:
        adata = sc.read_10x_mtx(folder, var_names="gene_symbols", make_unique=True)
    except (FileNotFoundError, OSError) as error:
        raise DataValidationError(f"{folder}: not a readable 10x folder (matrix.mtx, "
                                  f"genes.tsv / features.tsv, barcodes.tsv): {error}") from error
    table = read_classifications(folder)
    absent = ~table["barcode"].isin(adata.obs_names)
    if absent.any():
        raise DataValidationError(
            f"{folder / CLASSIFICATIONS}: {int(absent.sum())} barcodes are not in "
            f"barcodes.tsv, e.g. {table.loc[absent, 'barcode'].iloc[0]}")
    keep = table[(table["cell_quality"] == quality) & table["singlet_ID"].notna()]
    adata = adata[keep["barcode"].to_numpy()].copy()
    adata.obs["cell_line"] = keep["singlet_ID"].astype(str).to_numpy()
    adata.obs["experiment"] = folder.name
    adata.obs["condition"] = condition_of(folder.name)
    adata.obs_names = [f"{b}_{folder.name}" for b in adata.obs_names]
    return adata


def load_mixseq(root: str | os.PathLike, experiments: Sequence[str], control: str = "DMSO",
                quality: str = "normal") -> ad.AnnData:
    """The given experiment folders under `root`, concatenated on their shared genes.

    One experiment must be the control (condition `control`); lines present in only some
    experiments are kept (the bag builder decides which lines are usable).
    """
    root = Path(root)
    parts = [read_experiment(root / name, quality) for name in experiments]
    conditions = {condition_of(name) for name in experiments}
    if control not in conditions:
        raise DataValidationError(f"{root}: none of the experiments {list(experiments)} is the "
                                  f"control '{control}' (conditions: {sorted(conditions)})")
    adata = ad.concat(parts, join="inner", merge="same")
    if adata.n_vars < min(p.n_vars for p in parts):
        lost = min(p.n_vars for p in parts) - adata.n_vars
        raise DataValidationError(f"{root}: the experiments' gene lists differ ({lost} genes of "
                                  "the smallest are absent elsewhere); expected one reference")
    for key in ("cell_line", "condition", "experiment"):
        adata.obs[key] = adata.obs[key].astype("category")
    adata.uns["source"] = str(root)
    return adata


def ccle_line_key(ccle_name: str) -> str:
    """The GDSC matching key of a CCLE name: `NCIH226_LUNG` -> `H226` (lineage dropped)."""
    return line_key(str(ccle_name).split("_", 1)[0])


def tp53_wild_type(lines: Sequence[str], mutated: pd.Series) -> pd.Series:
    """True where a line (CCLE or plain name) is TP53 wild-type in `mutated` (a
    `read_mutation_status` Series); a line absent from it is an error naming it."""
    by_key = {line_key(name): bool(flag) for name, flag in mutated.items()}
    keys = {line: ccle_line_key(line) for line in lines}
    unknown = [line for line, key in keys.items() if key not in by_key]
    if unknown:
        raise DataValidationError(f"no TP53 status for cell lines {unknown[:5]} in the mutation "
                                  "table; pass the status explicitly")
    return pd.Series({line: not by_key[key] for line, key in keys.items()}, name="tp53_wt",
                     dtype=bool)

