"""The bulk drug-response network: a plain MLP regressor whose activation is an input array.

The activation (ReLU or tanh) is passed as a boolean array rather than fixed in the module, so
members of a vmapped hyper-parameter grid that differ only in activation share one program.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPRegressor(nn.Module):
    """Dense(h1) -> act -> Dense(h2) -> act ... -> Dense(1); `use_tanh` picks the activation."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, use_tanh: jax.Array) -> jax.Array:
        for width in self.hidden:
            h = nn.Dense(width)(x)
            x = jnp.where(use_tanh, jnp.tanh(h), nn.relu(h))
        return nn.Dense(1)(x)[..., 0]
