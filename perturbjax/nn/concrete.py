"""The concrete selector layer (Balin, Abid & Zou 2019): learn which k input genes to read.

Each of the k slots holds logits over the G genes. In training a slot reads a Gumbel-softmax
mixture of genes at a temperature annealed exponentially from `start` to `end`; at
evaluation it reads one gene, the argmax of its logits. Two fixes to the reference code:
- no gene is read twice: at read-out the slots, most confident first, each take their best
  gene not yet taken;
- convergence is the mean over slots of each slot's own maximum probability (the reference
  took the global maximum, which one sharp slot satisfies).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CONVERGED = 0.998  # the reference's threshold on the mean per-slot maximum probability


def temperature(step: jax.Array, total_steps: int, start: float = 10.0,
                end: float = 0.1) -> jax.Array:
    """Exponential annealing: `start` at step 0, `end` at `total_steps` and after."""
    fraction = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return start * (end / start) ** fraction


def selection_probabilities(logits: jax.Array) -> jax.Array:
    """(k, G): each slot's probability over genes."""
    return jax.nn.softmax(logits, axis=-1)


def mean_max_probability(logits: jax.Array) -> jax.Array:
    """Mean over slots of each slot's largest probability: 1 when every slot is one-hot."""
    return selection_probabilities(logits).max(axis=-1).mean()


def has_converged(logits: jax.Array, threshold: float = CONVERGED) -> jax.Array:
    """Whether the selection is effectively discrete (per-slot maxima, then the mean)."""
    return mean_max_probability(logits) >= threshold


def distinct_selection(logits: jax.Array) -> jax.Array:
    """(k,) gene index per slot, no gene twice: slots in order of confidence take their
    most probable gene among those not yet taken (k <= G)."""
    k, n_genes = logits.shape
    if k > n_genes:
        raise ValueError(f"cannot select {k} distinct genes out of {n_genes}")
    probabilities = selection_probabilities(logits)
    order = jnp.argsort(-probabilities.max(axis=-1))

    def take(i, state):
        chosen, taken = state
        slot = order[i]
        gene = jnp.argmax(jnp.where(taken, -jnp.inf, logits[slot]))
        return chosen.at[slot].set(gene), taken.at[gene].set(True)

    chosen, _ = jax.lax.fori_loop(0, k, take, (jnp.zeros(k, jnp.int32),
                                              jnp.zeros(n_genes, bool)))
    return chosen


class ConcreteSelector(nn.Module):
    """x (..., G) -> (..., k): a soft Gumbel-softmax read in training, k distinct genes at
    evaluation. Training needs a `gumbel` rng stream and the current `temperature`."""

    n_select: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, temperature: jax.Array | float = 0.1, *,
                 train: bool) -> jax.Array:
        logits = self.param("logits", nn.initializers.glorot_uniform(),
                            (self.n_select, x.shape[-1]))
        if not train:
            return jnp.take(x, distinct_selection(logits), axis=-1)
        gumbel = jax.random.gumbel(self.make_rng("gumbel"), logits.shape)
        weights = jax.nn.softmax((logits + gumbel) / temperature, axis=-1)
        return x @ weights.T
