"""The drug-response study's data: bulk lines, the held-out lines' single cells, lineages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anndata as ad
import pandas as pd

from perturbjax.data import data_folder
from perturbjax.data.cellbench import SYMBOLS_FILE, load_cellbench, read_gene_symbols
from perturbjax.data.gdsc import (
    SAMPLE_INFO_FILE,
    DrugResponse,
    load_gdsc,
    load_gdsc_release,
    read_lineages,
)
from perturbjax.drug.synthetic import make_toy_drug_data
from perturbjax.studies.drug_response.config import DrugStudyConfig


@dataclasses.dataclass(frozen=True)
class DrugData:
    """Bulk response and expression, the held-out lines' single cells (or None), each line's
    lineage (or None), and the configuration with the data's defaults filled in."""

    bulk: DrugResponse
    cells: ad.AnnData | None
    lineages: pd.Series | None
    config: DrugStudyConfig


def load_data(config: DrugStudyConfig) -> DrugData:
    """The configured data (see `DrugStudyConfig`), each source checked as it is read."""
    if config.toy:
        bulk, cells, truth = make_toy_drug_data()
        return DrugData(bulk, cells, None,
                        config.resolved(tuple(truth["held_out"]), gene_filter=None))
    data_dir = data_folder(config.data_dir, "the CellBench single cells (or use the toy set, "
                           "--toy)")
    bulk = (load_gdsc_release(config.response, config.expression, config.drug, config.measure)
            if config.response else load_gdsc(data_dir, config.drug, config.measure))
    symbols = read_gene_symbols(Path(data_dir) / SYMBOLS_FILE)
    cells = load_cellbench(Path(data_dir) / "cellbench", config.cellbench_runs, symbols)
    lineage_file = Path(config.lineages or Path(data_dir) / SAMPLE_INFO_FILE)
    lineages = (read_lineages(lineage_file)
                if config.lineages != "none" and lineage_file.is_file() else None)
    return DrugData(bulk, cells, lineages, config.resolved())
