"""Bag pooling: permutation invariance, masks, and the gated-attention formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.nn.pooling import GatedAttentionPool, MeanPool

Z = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 5))  # 3 bags of 7 cells, 5 dimensions


def test_pools_are_invariant_to_the_order_of_the_bag():
    shuffled = Z[:, jax.random.permutation(jax.random.PRNGKey(1), 7)]
    for pool in (MeanPool(), GatedAttentionPool(hidden=8)):
        variables = pool.init(jax.random.PRNGKey(2), Z)
        np.testing.assert_allclose(pool.apply(variables, Z), pool.apply(variables, shuffled),
                                   atol=1e-6)


def test_masked_instances_do_not_count():
    mask = jnp.arange(7) < 4
    padded = Z.at[:, 4:].set(1e3)
    np.testing.assert_allclose(MeanPool().apply({}, padded, mask), Z[:, :4].mean(1), atol=1e-6)
    pool = GatedAttentionPool(hidden=8)
    variables = pool.init(jax.random.PRNGKey(3), Z)
    np.testing.assert_allclose(pool.apply(variables, padded, mask),
                               pool.apply(variables, Z[:, :4]), atol=1e-5)


def test_gated_attention_follows_ilse_et_al():
    pool = GatedAttentionPool(hidden=8)
    variables = pool.init(jax.random.PRNGKey(4), Z)
    p = variables["params"]
    gate = (jnp.tanh(Z @ p["V"]["kernel"] + p["V"]["bias"])
            * jax.nn.sigmoid(Z @ p["U"]["kernel"] + p["U"]["bias"]))
    a = jax.nn.softmax((gate @ p["w"]["kernel"])[..., 0], axis=-1)
    pooled, weights = pool.apply(variables, Z, method=GatedAttentionPool.attention)
    np.testing.assert_allclose(weights, a, atol=1e-6)
    np.testing.assert_allclose(pooled, (a[..., None] * Z).sum(1), atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
