"""Genomic profiles of drug sensitivity (GPDS) and DREEP-style single-cell enrichment.

A GPDS scores every gene by its link to resistance (positive) or sensitivity (negative):
- `pearson_gpds`: DREEP's, the Pearson correlation of the gene with the response over lines;
- `network_gpds`: a trained network's, integrated gradients averaged over lines.

DREEP scores a cell by where its own top genes fall in a GPDS ranking: the cell's 250 highest
genes after GF-ICF normalisation form a set, and the unweighted Kolmogorov-Smirnov enrichment
score (fgsea with gseaParam = 0) of that set in the ranking, most-resistance-linked first, says
whether the cell looks resistant (ES > 0) or sensitive (ES < 0). With unit weights the null
distribution of ES depends only on the ranking length and the set size, so one permutation
null (`null_enrichment_scores`) serves every cell and every GPDS; the scores themselves are
computed for all cells at once from the sorted positions of their genes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import false_discovery_control
from sklearn.feature_extraction.text import TfidfTransformer


def pearson_gpds(features: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Per-gene Pearson correlation with the response over lines (constant genes -> 0)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(response, np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean()
    norms = np.sqrt((x**2).sum(axis=0) * (y**2).sum())
    return np.divide(x.T @ y, norms, out=np.zeros(x.shape[1]), where=norms > 0)


def integrated_gradients(fn: Callable[[jax.Array], jax.Array], inputs: np.ndarray,
                         baseline: np.ndarray, steps: int = 32) -> np.ndarray:
    """Integrated gradients of a scalar function of one row, for every row of `inputs`:
    (x - b) * mean of grad fn over `steps` midpoints of the straight path b -> x.
    Their sum over genes approaches fn(x) - fn(b) (completeness) as `steps` grows."""
    x = jnp.asarray(inputs, jnp.float32)
    b = jnp.asarray(baseline, jnp.float32)
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
    grad = jax.grad(fn)

    @jax.jit
    def attribute(row):
        path = b + alphas[:, None] * (row - b)
        return (row - b) * jax.vmap(grad)(path).mean(axis=0)

    return np.asarray(jax.lax.map(attribute, x, batch_size=64))


def network_gpds(fn: Callable[[jax.Array], jax.Array], inputs: np.ndarray,
                 baseline: np.ndarray, steps: int = 32) -> np.ndarray:
    """A network's GPDS: per gene, the mean over lines of IG * sign(x - b), the effect on
    the prediction of moving the gene from the baseline towards higher expression.

    The plain mean of IG over lines would cancel for a linear model with the mean baseline
    (sum of (x - mean) * w = 0); with the sign it is w * mean |x - b|, the coefficient on
    the scale of the gene's spread, so positive = higher expression predicts resistance.
    """
    attributions = integrated_gradients(fn, inputs, baseline, steps)
    return (attributions * np.sign(np.asarray(inputs) - np.asarray(baseline))).mean(axis=0)


def gficf(counts: np.ndarray) -> np.ndarray:
    """GF-ICF (gene frequency x inverse cell frequency, L2 per cell), DREEP's normalisation:
    scikit-learn's TF-IDF, whose idf ln((1 + n) / (1 + df)) + 1 keeps ubiquitous genes."""
    return np.asarray(TfidfTransformer(norm="l2").fit_transform(np.asarray(counts)).todense())


def top_gene_sets(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's `size` highest genes (column indices) and whether the cell has `size`
    genes above zero (cells that do not have no well-defined set)."""
    values = np.asarray(values)
    if not 0 < size < values.shape[1]:
        raise ValueError(f"set size {size} must lie in (0, {values.shape[1]} genes)")
    top = np.argpartition(-values, size - 1, axis=1)[:, :size]
    return top, (values > 0).sum(axis=1) >= size


def enrichment_scores(positions: np.ndarray, n_genes: int) -> np.ndarray:
    """Unweighted KS enrichment score of each set, given the 0-based positions of its genes
    in the ranking: (sets, k) -> (sets,).

    The running sum steps up 1/k at a member and down 1/(N - k) otherwise; its extremes are
    reached just after a member (maximum) or just before one (minimum), so only the k member
    positions are needed. ES is the extreme of larger magnitude (fgsea's convention).
    """
    positions = np.sort(np.asarray(positions), axis=1)
    k = positions.shape[1]
    hits = np.arange(1, k + 1)
    misses_before = positions - (hits - 1)
    after = hits / k - misses_before / (n_genes - k)
    before = (hits - 1) / k - misses_before / (n_genes - k)
    top, bottom = after.max(axis=1), before.min(axis=1)
    return np.where(top >= -bottom, top, bottom)


def null_enrichment_scores(n_genes: int, size: int, permutations: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """ES of `permutations` random gene sets of `size` genes: the null for every cell."""
    rng = np.random.default_rng(seed)
    positions = np.argsort(rng.random((permutations, n_genes)), axis=1)[:, :size]
    return enrichment_scores(positions, n_genes)


def enrichment_pvalues(scores: np.ndarray, null: np.ndarray) -> np.ndarray:
    """fgsea's simple permutation p-value, on the side of each score's sign:
    (1 + #null >= ES) / (1 + #null >= 0) for ES >= 0, mirrored for ES < 0."""
    scores = np.asarray(scores)
    null = np.sort(np.asarray(null))
    greater = len(null) - np.searchsorted(null, scores, side="left")
    less = np.searchsorted(null, scores, side="right")
    positive = len(null) - np.searchsorted(null, 0.0, side="left")
    negative = np.searchsorted(null, 0.0, side="right")
    return np.where(scores >= 0, (1 + greater) / (1 + positive), (1 + less) / (1 + negative))


def score_cells(gene_sets: np.ndarray, gpds: np.ndarray, null: np.ndarray,
                fdr: float = 0.1) -> dict[str, np.ndarray]:
    """DREEP's per-cell call for one GPDS: ES, p-value, BH q-value across cells, and
    `call` = +1 resistant (ES > 0, q < fdr), -1 sensitive (ES < 0, q < fdr), 0 otherwise."""
    order = np.argsort(-np.asarray(gpds), kind="stable")
    rank_of_gene = np.empty_like(order)
    rank_of_gene[order] = np.arange(len(order))
    es = enrichment_scores(rank_of_gene[gene_sets], len(order))
    p = enrichment_pvalues(es, null)
    q = false_discovery_control(p, method="bh")
    return {"es": es, "p": p, "q": q, "call": np.where(q < fdr, np.sign(es), 0).astype(int)}
