"""One's own prediction against real cells: the benchmark's raw metrics in one call, and the
predicted-against-real response figure (what scGen users know as `reg_mean_plot`).

    scores = perturbjax.evaluate(pred, real_cells, control_cells)
    perturbjax.plot_response(pred, real_cells, control_cells, "response.png")

`evaluate` builds the same reference as the benchmark for one held-out context
(`evaluate.HeldOutReference`: the real response, its DEGs, a PCA of the real cells for the
distances) and returns the same raw numbers as the benchmark's raw columns. Two things need
more than one context and the trivial references, and are left to the benchmark
(`perturbjax.studies.ood`): `discrimination` (which context a prediction is nearest) and the
calibrated scores (against the references' floor); the returned table says so in
`attrs["note"]`.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.datasets import dense_x
from perturbjax.errors import PerturbjaxError
from perturbjax.metrics.evaluate import HeldOutReference, evaluate_prediction, evaluation_ceiling
from perturbjax.metrics.response import N_DEGS
from perturbjax.plots import effect_scatter

NOTE = ("raw scores of one context; discrimination and the calibrated scores need several "
        "contexts and the trivial references: run the benchmark (perturbjax.studies.ood) for "
        "them")


def _matrices(predicted: ad.AnnData, real: ad.AnnData, control: ad.AnnData
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(predicted, real, control) as dense float32 matrices over the control cells' genes,
    matched by name, and those genes."""
    genes = np.asarray(control.var_names).astype(str)
    out = []
    for name, cells in (("predicted", predicted), ("real", real), ("control", control)):
        if cells.n_obs == 0:
            raise PerturbjaxError(f"the {name} cells are empty")
        missing = sorted(set(genes) - set(map(str, cells.var_names)))
        if missing:
            raise PerturbjaxError(f"the {name} cells lack {len(missing)} of the control cells' "
                                  f"genes: {missing[:5]}")
        out.append(dense_x(cells[:, list(genes)].X))
    return *out, genes


def evaluate(predicted: ad.AnnData, real: ad.AnnData, control: ad.AnnData,
             ceiling: bool = False, repeats: int = 10) -> pd.DataFrame:
    """The benchmark's raw metrics of `predicted` against the `real` perturbed cells of one
    context, whose unperturbed cells are `control`: one row, "prediction"; with `ceiling`,
    a second, "replicate ceiling" (half of the real cells predicting the other half, the
    mean over `repeats` random splits)."""
    pred, real_x, control_x, genes = _matrices(predicted, real, control)
    reference = HeldOutReference.build(control_x, real_x, genes)
    rows = {"prediction": evaluate_prediction(reference, pred)}
    if ceiling:
        rows["replicate ceiling"] = evaluation_ceiling(reference, repeats).scores
    table = pd.DataFrame(rows).T
    table.attrs["note"] = NOTE
    return table


def plot_response(predicted: ad.AnnData, real: ad.AnnData, control: ad.AnnData,
                  path: str | Path, title: str = "") -> Path:
    """Predicted against real mean response (mean minus the control mean) per gene, the real
    top-100 DEGs marked (the top 10 in red), written to `path` (PNG)."""
    pred, real_x, control_x, genes = _matrices(predicted, real, control)
    reference = HeldOutReference.build(control_x, real_x, genes)
    control_mean = control_x.astype(np.float64).mean(axis=0)
    predicted_response = pred.astype(np.float64).mean(axis=0) - control_mean
    effect_scatter(reference.response.response, {"prediction": predicted_response},
                   reference.response.top(N_DEGS), Path(path), title=title,
                   xlabel="real response", ylabel="predicted response")
    return Path(path)
