"""A download-free toy drug-response set with a known answer, for tests and the notebook.

Cell lines have log-expression profiles from a few shared programs plus noise; the response
(ln IC50) is a weighted sum of a known set of genes ("resistance" genes with positive weight,
"sensitivity" genes with negative weight) plus noise. Bulk profiles are z-scored within each
line, as in the shared GDSC matrix. Single cells of the held-out lines are Poisson counts
around their line's profile, so they share its gene ranking but not its scale.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.gdsc import DrugResponse


def make_toy_drug_data(n_lines: int = 100, n_genes: int = 120, n_response_genes: int = 12,
                       n_held_out: int = 5, cells_per_line: int = 60, library_size: float = 4e3,
                       noise: float = 0.3, seed: int = 0) -> tuple[DrugResponse, ad.AnnData, dict]:
    """(bulk lines with their response, single cells of the held-out lines, truth).

    truth: `resistance` / `sensitivity` gene names, `held_out` line names, `weights` per gene.
    """
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{g:04d}" for g in range(n_genes)])
    lines = np.array([f"LINE-{i:03d}" for i in range(n_lines)])
    baseline = rng.normal(1.5, 1.0, n_genes)
    loadings = rng.normal(0.0, 0.3, (4, n_genes))
    log_expression = (baseline + rng.normal(size=(n_lines, 4)) @ loadings
                      + rng.normal(0.0, 0.8, (n_lines, n_genes)))
    weights = np.zeros(n_genes)
    chosen = rng.choice(n_genes, n_response_genes, replace=False)
    half = n_response_genes // 2
    weights[chosen[:half]], weights[chosen[half:]] = 1.0, -1.0
    centred = (log_expression - log_expression.mean(0)) / log_expression.std(0)
    signal = centred @ weights / np.sqrt(n_response_genes)
    response = -2.0 + signal + noise * rng.normal(size=n_lines)
    zscored = ((log_expression - log_expression.mean(1, keepdims=True))
               / log_expression.std(1, keepdims=True))

    held_out = lines[-n_held_out:]
    rates = np.exp(log_expression[-n_held_out:])
    rates = rates / rates.sum(1, keepdims=True)
    sizes = rng.lognormal(np.log(library_size), 0.3, (n_held_out, cells_per_line))
    counts = rng.poisson(rates[:, None, :] * sizes[..., None]).reshape(-1, n_genes)
    cells = ad.AnnData(
        counts.astype(np.float32),
        obs=pd.DataFrame({"cell_line": np.repeat(held_out, cells_per_line)},
                         index=[f"cell{i}" for i in range(len(counts))]),
        var=pd.DataFrame({"symbol": genes}, index=genes),
    )
    cells.obs["cell_line"] = cells.obs["cell_line"].astype("category")
    bulk = DrugResponse("toy", "LN_IC50",
                        pd.DataFrame(zscored.astype(np.float32), index=lines, columns=genes),
                        pd.Series(response, index=lines, name="LN_IC50"))
    truth = {"resistance": genes[chosen[:half]].tolist(),
             "sensitivity": genes[chosen[half:]].tolist(),
             "held_out": held_out.tolist(), "weights": pd.Series(weights, index=genes)}
    return bulk, cells, truth
