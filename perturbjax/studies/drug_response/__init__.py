"""Drug sensitivity: a bulk cell-line network, its transfer to single cells, and GPDS scores.

Protocol (the original code's, its flaws fixed):
1. The single-cell lines are held out of everything bulk (they are the transfer test).
2. Genes: the original mean / variance filter on the training pool, intersected with the genes
   the single cells measure. Features: within-sample quantiles (default) or the original code's
   20-bin per-gene binning; standardised on training lines only.
3. Nested, repeated k-fold over cell lines: in each outer fold every grid point (x seeds) is
   trained on 80% of the outer training lines, all as one compiled program
   (`perturbjax.drug.grid`), and chosen on the other 20%; the chosen point is refit on the
   whole outer training set and scored on the outer test lines, beside the mean predictor
   and ridge on the same features. The grid table also lists every point's outer-test R^2
   (from the 80% fits: informative, optimistic if used to choose).
4. A final ensemble (the point best on inner validation over all folds, several seeds) is
   trained on the whole pool and applied to the held-out lines' bulk profiles, their single
   cells and their pseudo-bulk.
5. GPDS: Pearson correlation (over the pool's model features) vs the network's integrated
   gradients; DREEP-style enrichment of every cell's top genes in each, compared with the
   lines' measured response.
With `lineages`, a lineage-mean reference and within-lineage rank correlations say how much
of the cross-validated accuracy is tissue of origin (all five CellBench lines are lung).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.gdsc import DrugResponse, line_key
from perturbjax.drug.features import sum_counts_by_symbol
from perturbjax.studies.drug_response.config import (
    CELLBENCH_LINES,
    FEATURES,
    GPDS_NAMES,
    GRIDS,
    MEASURES,
    REFERENCES,
    DrugStudyConfig,
)
from perturbjax.studies.drug_response.cross_validation import (
    Design,
    cross_validate,
    lineage_mean,
    outer_and_inner_splits,
    regression_scores,
    select_genes,
    split_pool,
    within_lineage,
)
from perturbjax.studies.drug_response.data import DrugData, load_data
from perturbjax.studies.drug_response.report import (
    summarise_dreep,
    summarise_gpds,
    summarise_transfer,
    write_results,
)
from perturbjax.studies.drug_response.transfer import (
    FinalEnsemble,
    final_ensemble,
    transfer_to_cells,
)

logger = logging.getLogger("perturbjax")

__all__ = ["CELLBENCH_LINES", "FEATURES", "GPDS_NAMES", "GRIDS", "MEASURES", "REFERENCES",
           "Design", "DrugData", "DrugResults", "DrugStudyConfig", "FinalEnsemble",
           "cross_validate", "lineage_mean", "load_data", "outer_and_inner_splits",
           "regression_scores", "run", "run_on", "select_genes", "split_pool",
           "summarise_dreep", "summarise_gpds", "summarise_transfer", "within_lineage"]


@dataclasses.dataclass
class DrugResults:
    """Every table of the study by name (as written to `<name>.csv`) and the summary."""

    tables: dict[str, pd.DataFrame]
    summary: str


def run(config: DrugStudyConfig, workdir: str | Path) -> DrugResults:
    """The study on its configured data (`load_data`); see `run_on`."""
    data = load_data(config)
    return run_on(data.bulk, data.cells, data.config, workdir, data.lineages)


def run_on(bulk: DrugResponse, cells: ad.AnnData | None, config: DrugStudyConfig,
           workdir: str | Path, lineages: pd.Series | None = None) -> DrugResults:
    """The whole study; writes tables, figures and `summary.md` under `workdir`.

    `cells`: single cells (obs `cell_line`, var `symbol`, raw counts) of held-out lines.
    `lineages`: tissue per `line_key` (`perturbjax.data.gdsc.read_lineages`); adds a
    lineage-mean reference and within-lineage Spearman correlations. Empty held-out lines
    and gene filter take the shared data's defaults (`DrugStudyConfig.resolved`).
    """
    config = config.resolved()
    workdir = Path(workdir)
    (workdir / "figures").mkdir(parents=True, exist_ok=True)
    pool, held = split_pool(bulk, config)
    counts = sum_counts_by_symbol(cells) if cells is not None else None
    genes = select_genes(bulk, pool, counts, config)
    logger.info("%d pool lines, %d held-out lines, %d genes", pool.sum(), held.sum(), len(genes))
    expression = bulk.expression.loc[pool, genes].to_numpy(np.float64)
    response = bulk.response[pool].to_numpy(np.float64)
    pool_lineages = None
    if lineages is not None:
        keys = bulk.response.index[pool].map(line_key)
        pool_lineages = np.asarray(keys.map(lineages).fillna("unknown"), dtype=str)
    design = Design(expression, response, config, pool_lineages)
    points = GRIDS[config.grid]

    cv, out_of_fold, grid, final_point = cross_validate(design, config, points)
    logger.info("final configuration: %s", final_point)
    final = final_ensemble(design, final_point, config)
    out_of_fold.insert(0, "line", bulk.response.index[pool][out_of_fold["row"].to_numpy()])
    results = {"cv": cv, "grid": grid, "out_of_fold": out_of_fold}
    if pool_lineages is not None:
        results["within_lineage"] = within_lineage(out_of_fold, pool_lineages, response)
    if counts is not None:
        results.update(transfer_to_cells(bulk, held, counts, cells, genes, final, config))
    summary = write_results(results, bulk, config, final_point, workdir)
    return DrugResults(results, summary)
