"""Which cells train, validate and test: a random split, or whole expression clusters."""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from perturbjax.data.preprocess import Standardiser


def random_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """70 / 15 / 15 train / validation / test indices."""
    order = np.random.default_rng(seed).permutation(n)
    cut1, cut2 = int(round(0.7 * n)), int(round(0.85 * n))
    return {"train": np.sort(order[:cut1]), "validation": np.sort(order[cut1:cut2]),
            "test": np.sort(order[cut2:])}


def expression_clusters(logged: np.ndarray, n_pcs: int, max_clusters: int, seed: int
                        ) -> tuple[np.ndarray, dict[int, float]]:
    """KMeans on the first PCs of standardised log-CPM, k (3..max) by the best silhouette.

    At least three clusters, so that train, validation and test can each get whole ones."""
    pcs = PCA(min(n_pcs, *logged.shape), random_state=seed).fit_transform(
        Standardiser(logged)(logged))
    labels, silhouettes = {}, {}
    for k in range(3, max(3, max_clusters) + 1):
        labels[k] = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs)
        silhouettes[k] = float(silhouette_score(pcs, labels[k]))
    best = max(silhouettes, key=silhouettes.get)
    return labels[best], silhouettes


def cluster_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Whole clusters to test and validation, each as close to 15% of cells as possible."""
    clusters, sizes = np.unique(labels, return_counts=True)
    if len(clusters) < 3:
        raise ValueError(f"a cluster-disjoint split needs at least 3 clusters; got "
                         f"{len(clusters)}")
    n, chosen = len(labels), {}
    remaining = list(range(len(clusters)))
    for part in ("test", "validation"):
        subsets = [s for r in range(1, len(remaining)) for s in
                   itertools.combinations(remaining, r)]
        best = min(subsets, key=lambda s: abs(sizes[list(s)].sum() / n - 0.15))
        chosen[part] = np.flatnonzero(np.isin(labels, clusters[list(best)]))
        remaining = [c for c in remaining if c not in best]
    chosen["train"] = np.flatnonzero(np.isin(labels, clusters[remaining]))
    return {part: chosen[part] for part in ("train", "validation", "test")}
