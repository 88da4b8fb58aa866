"""Pooling a bag of instance embeddings into one vector, invariant to the order of the bag.

`MeanPool` averages; `GatedAttentionPool` is Ilse, Tomczak & Welling (2018):
a_i = softmax_i(w^T (tanh(V z_i) * sigmoid(U z_i))), z_bag = sum_i a_i z_i. Both take an
optional mask so that bags padded to one size pool only their real instances.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _mask_or_ones(z: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.ones(z.shape[:-1], bool) if mask is None else mask


class MeanPool(nn.Module):
    """(..., bag, d) -> (..., d): the mean of the (unmasked) instances."""

    @nn.compact
    def __call__(self, z: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        weights = _mask_or_ones(z, mask).astype(z.dtype)
        return (weights[..., None] * z).sum(-2) / jnp.maximum(weights.sum(-1), 1.0)[..., None]


class GatedAttentionPool(nn.Module):
    """(..., bag, d) -> (..., d): gated-attention weighted sum; `attention` returns the
    weights too (for inspection of which cells the model attends to)."""

    hidden: int = 32

    def __call__(self, z: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return self.attention(z, mask)[0]

    @nn.compact
    def attention(self, z: jax.Array, mask: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
        gate = jnp.tanh(nn.Dense(self.hidden, name="V")(z)) * jax.nn.sigmoid(
            nn.Dense(self.hidden, name="U")(z))
        scores = nn.Dense(1, use_bias=False, name="w")(gate)[..., 0]
        scores = jnp.where(_mask_or_ones(z, mask), scores, -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1)
        return (weights[..., None] * z).sum(-2), weights
