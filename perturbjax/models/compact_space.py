"""A compact space for models that work below gene space: a PCA of a fit's own training cells.

The flow member (`models.flow`) learns its vector field in this space. The space is fitted
once per fit, on the cells that fit trains on and never on the cells it is scored on: without
the validation split's cells, and, when the epoch is selected on inner contexts, without those
contexts' perturbed cells (`ModelFamily` chooses the cells). Coordinates are divided by one
scale so that the components have unit mean variance, which keeps a network's inputs and
targets near 1 whatever the data's units.

The space is part of a model's objective, so it is hashable and compared by content (a
digest of its arrays); a saved model fits it again from the saved pool, which gives the same
space (sklearn's full SVD with its deterministic sign convention).
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.decomposition import PCA

from perturbjax.data.datasets import dense_x


@dataclasses.dataclass(frozen=True, eq=False)
class CompactSpace:
    """x -> (x - mean) @ loadings / scale and back; `loadings` is (genes, components)."""

    mean: np.ndarray
    loadings: np.ndarray
    scale: float

    @classmethod
    def fit(cls, x: np.ndarray, components: int) -> CompactSpace:
        """The first `components` principal axes of the rows of `x` (fewer when `x` has
        fewer rows or genes)."""
        x = np.asarray(x, np.float64)
        n = min(components, x.shape[0] - 1, x.shape[1])
        if n < 1:
            raise ValueError(f"a compact space needs at least 2 cells and 1 gene; got {x.shape}")
        pca = PCA(n_components=n, svd_solver="full").fit(x)
        scale = float(np.sqrt(pca.explained_variance_.mean()))
        return cls(pca.mean_.astype(np.float32), pca.components_.T.astype(np.float32),
                   scale if scale > 0 else 1.0)

    @classmethod
    def of_cells(cls, cells, components: int) -> CompactSpace:
        """`fit` on an AnnData's X (sparse or dense)."""
        return cls.fit(dense_x(cells.X), components)

    @property
    def components(self) -> int:
        return self.loadings.shape[1]

    def encode(self, x: jax.Array) -> jax.Array:
        return (x - jnp.asarray(self.mean)) @ jnp.asarray(self.loadings) / self.scale

    def displacement(self, dz: jax.Array) -> jax.Array:
        """A move in the space as a move in genes (no mean added)."""
        return self.scale * dz @ jnp.asarray(self.loadings).T

    def decode(self, z: jax.Array) -> jax.Array:
        return jnp.asarray(self.mean) + self.displacement(z)

    def digest(self) -> str:
        h = hashlib.sha256()
        for part in (self.mean, self.loadings, np.float64(self.scale)):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompactSpace) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())
