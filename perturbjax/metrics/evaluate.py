"""Every metric of one prediction: DEGs, R^2, and distances in a PCA of the real cells."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.decomposition import PCA

from perturbjax.metrics.distances import compare_distances
from perturbjax.metrics.expression import common_degs, deg_subsets, r2_scores


@dataclasses.dataclass(frozen=True)
class HeldOutReference:
    """What every prediction for one held-out context (and dose) is scored against.

    Built once per context: the real DEG sets for R^2 and a PCA fitted on real cells only
    (control + real perturbed), so every model is scored in the same space (the seed refitted
    the PCA with each model's predictions included).
    """

    control: np.ndarray
    real: np.ndarray
    genes: np.ndarray
    subsets: dict[str, np.ndarray]
    pca: PCA
    real_pcs: np.ndarray
    control_pcs: np.ndarray

    @classmethod
    def build(cls, control: np.ndarray, real: np.ndarray, genes, n_components: int = 50,
              tops: tuple[int, ...] = (20, 100), seed: int = 0) -> HeldOutReference:
        data = np.vstack([control, real])
        n_components = min(n_components, data.shape[0] - 1, data.shape[1])
        pca = PCA(n_components=n_components, random_state=seed).fit(data)
        return cls(control, real, np.asarray(genes).astype(str),
                   deg_subsets(control, real, genes, tops), pca,
                   pca.transform(real), pca.transform(control))


def evaluate_prediction(reference: HeldOutReference, pred: np.ndarray, n_top_degs: int = 100,
                        seed: int = 0) -> dict[str, float]:
    """All metrics of `pred` (cells x genes) against the reference's real perturbed cells."""
    ref = reference
    scores: dict[str, float] = {}
    scores.update(common_degs(ref.control, ref.real, pred, ref.genes, n_top=n_top_degs))
    scores.update(r2_scores(ref.real, pred, ref.subsets, seed=seed))
    scores["mse_means"] = float(np.mean((ref.real.mean(0) - pred.mean(0)) ** 2))
    scores.update(compare_distances(ref.real_pcs, ref.pca.transform(pred), ref.control_pcs))
    return scores
