"""The final ensemble on the whole pool, applied to the held-out lines' bulk profiles, single
cells and pseudo-bulk; its gene signatures (GPDS) and their single-cell enrichment (DREEP)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable

import anndata as ad
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from perturbjax.data.gdsc import DrugResponse, line_key
from perturbjax.data.preprocess import Standardiser
from perturbjax.drug.features import QuantileBins, pseudo_bulk, within_sample_quantiles
from perturbjax.drug.gpds import (
    gficf,
    network_gpds,
    null_enrichment_scores,
    pearson_gpds,
    score_cells,
    top_gene_sets,
)
from perturbjax.drug.grid import GridPoint, GridRun, ensemble, train_runs
from perturbjax.linear import RidgeCV
from perturbjax.studies.drug_response.config import GPDS_NAMES, DrugStudyConfig
from perturbjax.studies.drug_response.cross_validation import Design

logger = logging.getLogger("perturbjax")


@dataclasses.dataclass
class FinalEnsemble:
    """The final point's seeds trained on the whole pool, with the pool's transforms."""

    point: GridPoint
    params: list
    features: np.ndarray
    response: np.ndarray
    standardiser: Standardiser
    response_scaler: Standardiser
    bins: QuantileBins | None
    ridge: RidgeCV

    def ensemble_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Mean prediction of the seeds for one standardised row (standardised target)."""
        return ensemble(self.point, self.params)

    @functools.cached_property
    def _batched(self) -> Callable[[jax.Array], jax.Array]:
        return jax.jit(jax.vmap(self.ensemble_fn()))

    def predict(self, standardised: np.ndarray) -> dict[str, np.ndarray]:
        raw = np.asarray(self._batched(jnp.asarray(standardised)))
        mlp = self.response_scaler.inverse(raw[:, None])
        return {"mlp": mlp[:, 0], "ridge": self.ridge.predict(standardised.astype(np.float64))}


def final_ensemble(design: Design, point: GridPoint, config: DrugStudyConfig) -> FinalEnsemble:
    """The final point's seeds and ridge trained on every pool line."""
    rows = np.arange(len(design.response))
    data, scalers = design.folds([rows])
    raw, bins = design.raw(rows)
    trained = train_runs([GridRun(point, 0, s) for s in config.final_seeds], data, keep_params=True)
    ridge = RidgeCV(alphas=config.ridge_alphas).fit(data.features[0].astype(np.float64),
                                                    design.response)
    return FinalEnsemble(point, trained.params, data.features[0], design.response,
                         Standardiser(raw, np.float32), scalers[0], bins, ridge)


def _raw_features(values: np.ndarray, final: FinalEnsemble, counts: bool) -> np.ndarray:
    """Unstandardised model features of bulk profiles or of counts (cells, pseudo-bulk)."""
    if final.bins is None:
        return within_sample_quantiles(values)
    if counts:  # the original code's route: bulk bin edges applied to log-CPM (another scale)
        values = np.log1p(values / np.maximum(values.sum(1, keepdims=True), 1) * 1e6)
    return final.bins.transform(values)


def transfer_to_cells(bulk: DrugResponse, held: np.ndarray, counts: pd.DataFrame,
                      cells: ad.AnnData, genes: pd.Index, final: FinalEnsemble,
                      config: DrugStudyConfig) -> dict[str, pd.DataFrame]:
    """Per-cell, pseudo-bulk and bulk predictions of the held-out lines; GPDS and DREEP."""
    measured = {line_key(n): v for n, v in bulk.response[held].items()}
    bulk_raw = _raw_features(bulk.expression.loc[held, genes].to_numpy(np.float64), final,
                             counts=False)
    bulk_pred = final.predict(final.standardiser(bulk_raw))
    bulk_by_key = {line_key(n): i for i, n in enumerate(bulk.response[held].index)}

    cell_counts = counts[genes].to_numpy(np.float64)
    cell_lines = cells.obs["cell_line"].astype(str).map(line_key)
    cell_raw = _raw_features(cell_counts, final, counts=True)
    cell_pred = final.predict(final.standardiser(cell_raw))
    # The platform shift removed per gene: cells standardised on themselves, not on bulk.
    own_pred = final.predict(Standardiser(cell_raw, np.float32)(cell_raw))
    pseudo = pseudo_bulk(counts[genes], cell_lines)
    pseudo_pred = final.predict(final.standardiser(
        _raw_features(pseudo.to_numpy(np.float64), final, counts=True)))

    per_cell = pd.DataFrame({"cell_line": cell_lines.to_numpy(), "mlp": cell_pred["mlp"],
                             "ridge": cell_pred["ridge"], "mlp_own_scale": own_pred["mlp"],
                             "ridge_own_scale": own_pred["ridge"]}, index=cells.obs_names)
    rows = []
    for i, key in enumerate(pseudo.index):
        if key not in measured:
            logger.warning("cells of line %s have no measured response; skipped", key)
            continue
        mine = per_cell[per_cell["cell_line"] == key]
        b = bulk_by_key[key]
        rows.append({"line": key, "measured": measured[key], "n_cells": len(mine),
                     "bulk_mlp": bulk_pred["mlp"][b], "bulk_ridge": bulk_pred["ridge"][b],
                     "pseudobulk_mlp": pseudo_pred["mlp"][i],
                     "pseudobulk_ridge": pseudo_pred["ridge"][i],
                     "cells_median_mlp": mine["mlp"].median(),
                     "cells_q25_mlp": mine["mlp"].quantile(0.25),
                     "cells_q75_mlp": mine["mlp"].quantile(0.75),
                     "cells_median_ridge": mine["ridge"].median(),
                     "cells_median_mlp_own_scale": mine["mlp_own_scale"].median(),
                     "cells_median_ridge_own_scale": mine["ridge_own_scale"].median()})
    transfer = pd.DataFrame(rows)

    pcc = pearson_gpds(final.features, final.response)
    net = network_gpds(final.ensemble_fn(), final.features, np.zeros(len(genes)), config.ig_steps)
    gpds = pd.DataFrame({"gene": genes, "pcc": pcc, "network": net})

    size = min(config.set_size, len(genes) // 4)
    sets, usable = top_gene_sets(gficf(cell_counts), size)
    null = null_enrichment_scores(len(genes), size, config.permutations, config.seed)
    dreep = per_cell.loc[usable].copy()
    for name in GPDS_NAMES:
        scores = score_cells(sets[usable], gpds[name].to_numpy(), null, config.fdr)
        dreep[f"es_{name}"], dreep[f"q_{name}"] = scores["es"], scores["q"]
        dreep[f"call_{name}"] = scores["call"]
    dreep["measured"] = dreep["cell_line"].map(measured)
    if (~usable).any():
        logger.warning("%d cells have fewer than %d detected model genes; not scored by DREEP",
                       (~usable).sum(), size)
    return {"transfer": transfer, "cells": per_cell, "gpds": gpds, "dreep": dreep}
