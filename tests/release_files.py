"""Small files in the layouts users bring (the original code's tables, GDSC's release, MIX-seq's 10x
folders), for the loader tests and the documented commands that read such files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from perturbjax.data.gdsc import load_gdsc
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig, make_mixseq_like


def write_original_tables(folder: Path, counts: pd.DataFrame, exposures: pd.DataFrame
                      ) -> tuple[Path, Path]:
    """The original study's two tables: `counts.csv` genes x cells, `exposures.csv` cells x
    signatures."""
    expression_path, exposures_path = folder / "counts.csv", folder / "exposures.csv"
    counts.T.to_csv(expression_path)
    exposures.to_csv(exposures_path)
    return expression_path, exposures_path


def write_10x_experiment(folder: Path, counts: np.ndarray, genes: list[str],
                         classes: pd.DataFrame) -> None:
    """A 10x v2 folder (genes x cells matrix.mtx, genes.tsv, barcodes.tsv) + MIX-seq's
    `classifications.csv`; barcodes are `BC<i>-1` in the order of `counts`' rows."""
    folder.mkdir(parents=True)
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(counts.T))
    pd.DataFrame({"id": [f"ENSG{i:05d}" for i in range(len(genes))], "symbol": genes}).to_csv(
        folder / "genes.tsv", sep="\t", header=False, index=False)
    pd.Series([f"BC{i:03d}-1" for i in range(len(counts))]).to_csv(
        folder / "barcodes.tsv", header=False, index=False)
    classes.to_csv(folder / "classifications.csv", index=False)


def write_mixseq_release(data_dir: Path, root: Path, experiments: tuple[str, str],
                         n_lines: int = 8, n_genes: int = 300) -> None:
    """McFarland-like cells around real GDSC lines, written as one 10x folder per experiment
    (the control first); every cell a normal-quality singlet named by its line."""
    raw = make_mixseq_like(data_dir, MixSeqSimConfig(n_lines=n_lines, n_wild_type=3,
                                                     n_genes=n_genes, cells_per_condition=60))
    for name, condition in zip(experiments, ("DMSO", "Idasanutlin"), strict=True):
        part = raw[raw.obs["condition"] == condition]
        counts = np.asarray(part.X.todense() if sp.issparse(part.X) else part.X)
        classes = pd.DataFrame({"barcode": [f"BC{i:03d}-1" for i in range(part.n_obs)],
                                "singlet_ID": part.obs["cell_line"].astype(str).to_numpy(),
                                "cell_quality": "normal"})
        write_10x_experiment(root / name, counts, list(part.var_names), classes)


def write_gdsc_release(data_dir: Path, response_path: Path, expression_path: Path,
                       drugs: tuple[str, ...]) -> None:
    """The shared GDSC copy in the official release's layout: the fitted dose-response table
    (one row per line and drug, with COSMIC IDs) and the RMA matrix (`GENE_SYMBOLS`,
    `GENE_title`, `DATA.<COSMIC_ID>`), on an RMA-like log2 scale (6 + 2 x the z-score)."""
    rows, profiles = [], {}
    for drug_id, drug in enumerate(drugs, start=1000):
        bulk = load_gdsc(data_dir, drug)
        for line in bulk.response.index:
            profiles.setdefault(line, bulk.expression.loc[line])
        rows.append(pd.DataFrame({"DATASET": "GDSC2", "CELL_LINE_NAME": bulk.response.index,
                                  "DRUG_ID": drug_id, "DRUG_NAME": drug,
                                  bulk.measure: bulk.response.to_numpy()}))
    cosmic = {line: 900000 + i for i, line in enumerate(profiles)}
    response = pd.concat(rows, ignore_index=True)
    response.insert(1, "COSMIC_ID", response["CELL_LINE_NAME"].map(cosmic))
    response["AUC"] = 0.8
    response.to_csv(response_path, index=False)
    matrix = pd.DataFrame(profiles)
    rma = pd.DataFrame({"GENE_SYMBOLS": matrix.index, "GENE_title": matrix.index})
    values = 6.0 + 2.0 * matrix.to_numpy(np.float64)
    columns = pd.DataFrame(values, columns=[f"DATA.{cosmic[line]}" for line in matrix.columns])
    pd.concat([rma, columns], axis=1).to_csv(expression_path, sep="\t", index=False)
