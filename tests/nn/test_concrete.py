"""The concrete selector: annealing, soft reads in training, distinct hard genes at evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perturbjax.nn.concrete import (
    ConcreteSelector,
    distinct_selection,
    has_converged,
    mean_max_probability,
    temperature,
)


def test_temperature_anneals_exponentially_from_start_to_end():
    steps = jnp.array([0, 50, 100, 150])
    np.testing.assert_allclose(temperature(steps, 100), [10.0, 1.0, 0.1, 0.1], rtol=1e-5)


def test_two_slots_peaking_on_one_gene_still_read_distinct_genes():
    logits = jnp.array([[0.0, 9.0, 8.0, 0.0],    # most confident: takes gene 1
                        [0.0, 5.0, 4.0, 3.0],    # wants gene 1 too: gets gene 2
                        [1.0, 0.0, 0.0, 0.0]])
    assert distinct_selection(logits).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="distinct"):
        distinct_selection(jnp.zeros((5, 4)))


def test_evaluation_reads_the_selected_genes_and_training_reads_a_convex_mixture():
    selector = ConcreteSelector(n_select=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 10))
    variables = selector.init({"params": jax.random.PRNGKey(1)}, x, train=False)
    genes = distinct_selection(variables["params"]["logits"])
    np.testing.assert_array_equal(selector.apply(variables, x, train=False), x[:, genes])
    ones = selector.apply(variables, jnp.ones((2, 10)), 0.5, train=True,
                          rngs={"gumbel": jax.random.PRNGKey(2)})
    np.testing.assert_allclose(ones, 1.0, rtol=1e-5)  # each slot's weights sum to 1


def test_at_low_temperature_a_training_read_is_nearly_one_gene():
    selector = ConcreteSelector(n_select=4)
    x = jnp.eye(12)  # row g is gene g alone: the read shows each slot's weight on gene g
    variables = selector.init({"params": jax.random.PRNGKey(0)}, x, train=False)
    reads = selector.apply(variables, x, 1e-3, train=True, rngs={"gumbel": jax.random.PRNGKey(3)})
    assert np.all(np.asarray(reads).max(axis=0) > 0.99)


def test_convergence_uses_each_slots_own_maximum():
    sharp = jnp.array([50.0, 0.0, 0.0, 0.0])
    flat = jnp.zeros(4)
    one_sharp_slot = jnp.stack([sharp, flat, flat])
    assert float(jnp.max(jax.nn.softmax(one_sharp_slot, axis=-1))) > 0.998  # the reference's test
    assert not has_converged(one_sharp_slot)
    assert mean_max_probability(one_sharp_slot) == pytest.approx((1 + 0.25 + 0.25) / 3, abs=1e-6)
    assert has_converged(jnp.stack([sharp, jnp.roll(sharp, 1), jnp.roll(sharp, 2)]))
