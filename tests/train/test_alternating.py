"""Gated optimiser steps and the parameter-group split of adversarial models."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from perturbjax.train import alternating
from perturbjax.train.trees import keep_if

PARAMS = {"net": {"w": jnp.ones(3)}, "critic": {"w": jnp.full(2, 2.0)}}


def test_split_separates_the_named_groups_and_refuses_absent_ones():
    rest, named = alternating.split(PARAMS, {"critic"})
    assert set(rest) == {"net"} and set(named) == {"critic"}
    with pytest.raises(KeyError, match="discriminator"):
        alternating.split(PARAMS, {"discriminator"})


def test_a_switched_off_update_keeps_parameters_and_optimiser_state():
    tx = optax.sgd(0.1, momentum=0.9)
    state = tx.init(PARAMS)
    grads = {"net": {"w": jnp.ones(3)}, "critic": {"w": jnp.ones(2)}}
    kept, kept_state = alternating.update(tx, grads, state, PARAMS, when=jnp.asarray(False))
    chex.assert_trees_all_equal(kept, PARAMS)
    chex.assert_trees_all_equal(kept_state, state)
    moved, _ = alternating.update(tx, grads, state, PARAMS, when=jnp.asarray(True))
    chex.assert_trees_all_equal(moved, alternating.update(tx, grads, state, PARAMS)[0])
    np.testing.assert_allclose(moved["net"]["w"], 1.0 - 0.1)


def test_keep_if_takes_the_new_tree_only_where_the_flag_holds():
    new, old = {"a": jnp.zeros(2), "b": jnp.zeros(())}, {"a": jnp.ones(2), "b": jnp.ones(())}
    chex.assert_trees_all_equal(keep_if(jnp.asarray(True), new, old), new)
    chex.assert_trees_all_equal(keep_if(jnp.asarray(False), new, old), old)


def test_binary_cross_entropy_matches_its_formula_and_weights():
    logits, labels = jnp.asarray([0.0, 2.0, -1.0]), jnp.asarray([1.0, 0.0, 1.0])
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits)))
    per_cell = -(np.asarray(labels) * np.log(p) + (1 - np.asarray(labels)) * np.log(1 - p))
    np.testing.assert_allclose(alternating.binary_cross_entropy(logits, labels),
                               per_cell.mean(), rtol=1e-6)
    weights = jnp.asarray([1.0, 0.0, 1.0])
    np.testing.assert_allclose(alternating.binary_cross_entropy(logits, labels, weights),
                               per_cell[[0, 2]].mean(), rtol=1e-6)
