"""The PerturbX study's data: the toy set, real MIX-seq folders with each line's TP53 status,
or the semi-synthetic set around real GDSC lines; cells log-normalised."""

from __future__ import annotations

import dataclasses

import anndata as ad
import pandas as pd
import scanpy as sc

from perturbjax.data import data_folder
from perturbjax.data.gdsc import MUTATIONS_FILE, read_mutation_status
from perturbjax.data.mixseq import load_mixseq, tp53_wild_type
from perturbjax.data.preprocess import normalize_log1p
from perturbjax.data.synthetic_mixseq import make_mixseq_like, make_toy_mixseq
from perturbjax.errors import PerturbjaxError
from perturbjax.studies.perturbx.config import PerturbXStudyConfig


def prepare_cells(raw: ad.AnnData, n_top_genes: int | None = None) -> ad.AnnData:
    """Raw counts -> log1p(normalize_total), then (optionally) the `n_top_genes` most variable
    genes by scanpy's `highly_variable_genes` over all cells, as the paper did (5,000)."""
    cells = normalize_log1p(raw)
    if n_top_genes is not None and n_top_genes < cells.n_vars:
        sc.pp.highly_variable_genes(cells, n_top_genes=n_top_genes, subset=True)
    return cells


def load_data(config: PerturbXStudyConfig) -> tuple[ad.AnnData, list[str] | None]:
    """(log-normalised cells with obs `tp53_wt`, the programme genes when known)."""
    if config.toy:
        raw = make_toy_mixseq(seed=config.fold_seed)
        return prepare_cells(raw, config.hvgs), raw.uns["truth"]["programme"]
    if config.mixseq_dir:
        raw = load_mixseq(config.mixseq_dir, config.experiments)
        lines = raw.obs["cell_line"].astype(str)
        if config.status_csv:
            table = pd.read_csv(config.status_csv)
            missing = {"cell_line", "tp53_wt"} - set(table.columns)
            if missing:
                raise PerturbjaxError(f"{config.status_csv}: missing columns {sorted(missing)}")
            status = table.set_index("cell_line")["tp53_wt"].astype(bool)
        else:
            data_dir = data_folder(config.data_dir, "the TP53 status from GDSC (or give "
                                   "status_csv, --status_csv)")
            status = tp53_wild_type(sorted(lines.unique()),
                                    read_mutation_status(data_dir / MUTATIONS_FILE))
        absent = sorted(set(lines) - set(status.index))
        if absent:
            raise PerturbjaxError(f"no TP53 status for cell lines {absent[:5]}")
        raw.obs["tp53_wt"] = lines.map(status).astype(bool).to_numpy()
        return prepare_cells(raw, config.hvgs), None
    data_dir = data_folder(config.data_dir, "the semi-synthetic set's real lines (or use the "
                           "toy set, --toy)")
    raw = make_mixseq_like(data_dir, dataclasses.replace(config.simulation, seed=config.fold_seed))
    return prepare_cells(raw, config.hvgs), raw.uns["truth"]["programme"]
