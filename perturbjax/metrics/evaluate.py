"""Every metric of one prediction: the response metrics, the source documents' DEGs and R^2,
and distances in a PCA of the real cells; and the replicate ceiling of all of them."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.decomposition import PCA

from perturbjax.metrics.calibration import Ceiling, replicate_ceiling
from perturbjax.metrics.distances import compare_distances
from perturbjax.metrics.expression import common_degs, deg_subsets, r2_scores, wilcoxon
from perturbjax.metrics.response import ResponseTruth, response_scores

# Bookkeeping of a score rather than a score: neither calibrated nor ranked.
NOT_SCORES = frozenset({"wasserstein_epsilon"})


@dataclasses.dataclass(frozen=True)
class HeldOutReference:
    """What every prediction for one held-out context (and dose) is scored against.

    Built once per context: the real response and DEG lists, the source documents' DEG sets
    for R^2, and a PCA fitted on real cells only (control + real perturbed), so every model
    is scored in the same space (the original code refitted the PCA with each model's predictions
    included).
    """

    control: np.ndarray
    real: np.ndarray
    genes: np.ndarray
    subsets: dict[str, np.ndarray]
    pca: PCA
    real_pcs: np.ndarray
    control_pcs: np.ndarray
    response: ResponseTruth

    @classmethod
    def build(cls, control: np.ndarray, real: np.ndarray, genes, n_components: int = 50,
              tops: tuple[int, ...] = (20, 100), seed: int = 0,
              pca: PCA | None = None) -> HeldOutReference:
        """`pca`: a PCA already fitted for this context (the replicate ceiling's splits share
        the context's own), else one is fitted on control + real."""
        if pca is None:
            data = np.vstack([control, real])
            n_components = min(n_components, data.shape[0] - 1, data.shape[1])
            pca = PCA(n_components=n_components, random_state=seed).fit(data)
        test = wilcoxon(control, real, genes)  # one test serves both DEG conventions
        return cls(control, real, np.asarray(genes).astype(str),
                   deg_subsets(test, genes, tops), pca,
                   pca.transform(real), pca.transform(control),
                   ResponseTruth.build(control, real, genes, frame=test))


def evaluate_prediction(reference: HeldOutReference, pred: np.ndarray, n_top_degs: int = 100,
                        seed: int = 0) -> dict[str, float]:
    """All metrics of `pred` (cells x genes) against the reference's real perturbed cells."""
    ref = reference
    scores = response_scores(ref.response, pred)
    scores.update(common_degs(ref.control, ref.real, pred, ref.genes, n_top=n_top_degs))
    scores.update(r2_scores(ref.real, pred, ref.subsets, seed=seed))
    scores["mse_means"] = float(np.mean((ref.real.mean(0) - pred.mean(0)) ** 2))
    scores.update(compare_distances(ref.real_pcs, ref.pca.transform(pred), ref.control_pcs))
    return scores


def evaluation_ceiling(reference: HeldOutReference, repeats: int = 10,
                       seed: int = 0) -> Ceiling:
    """The replicate ceiling of every metric of `evaluate_prediction` (see `calibration`):
    each split builds its reference from the truth half, as the context's reference is built
    from all its real cells, in the context's PCA."""
    def score(control, truth, scored):
        half = HeldOutReference.build(control, truth, reference.genes, pca=reference.pca)
        scores = evaluate_prediction(half, scored, seed=seed)
        return {k: v for k, v in scores.items() if k not in NOT_SCORES}

    return replicate_ceiling(score, reference.control, reference.real, repeats, seed)
