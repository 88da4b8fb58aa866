"""Alternating updates of parameter groups inside one training step (adversarial models).

A model with a discriminator keeps one optimiser state per parameter group and, per batch,
updates the network and then the discriminator, each on its own loss. Every update is a pure
function of arrays, so the alternation runs inside the loop's scanned, vmapped epoch; a phase
that is switched off (e.g. discriminator pre-training in the original schedule) keeps the old
values instead of branching on the host.
"""

from __future__ import annotations

from collections.abc import Collection

import jax
import jax.numpy as jnp
import optax

from perturbjax.train.objective import PyTree
from perturbjax.train.trees import keep_if


def split(params: PyTree, names: Collection[str]) -> tuple[dict, dict]:
    """(the top-level entries not in `names`, those in `names`) of a parameter dict."""
    missing = set(names) - set(params)
    if missing:
        raise KeyError(f"parameter groups {sorted(missing)} are absent (have {sorted(params)})")
    return ({k: v for k, v in params.items() if k not in names},
            {k: v for k, v in params.items() if k in names})


def update(tx: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
           params: PyTree, when: jax.Array | None = None) -> tuple[PyTree, PyTree]:
    """One optimiser step of a parameter group: (new params, new optimiser state). With a
    traced boolean `when`, a step that is switched off keeps the old params and state."""
    updates, new_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    if when is None:
        return new_params, new_state
    return keep_if(when, new_params, params), keep_if(when, new_state, opt_state)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array,
                         weights: jax.Array | None = None) -> jax.Array:
    """Mean (or `weights`-weighted mean) BCE of logits against labels in [0, 1]."""
    losses = optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(labels, logits.shape))
    if weights is None:
        return losses.mean()
    weights = weights.astype(losses.dtype)
    return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)
