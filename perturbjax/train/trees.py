"""Leaf-wise choices between two parameter trees, for traced conditions inside compiled steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from perturbjax.train.objective import PyTree


def keep_if(flag: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """`new` where the traced boolean `flag` holds, else `old` (leaf by leaf)."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(flag, n, o), new, old)
