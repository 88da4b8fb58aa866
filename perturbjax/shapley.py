"""Shapley values of a function's input features, by permutation sampling.

A feature absent from a coalition takes its baseline value (interventional Shapley values
with a fixed reference). For one permutation of the features, adding them one at a time and
recording each change of f gives contributions that sum exactly to f(x) - f(baseline); their
mean over random permutations is an unbiased estimate of the Shapley values (Castro, Gomez &
Tejada 2009). Permutations are drawn in antithetic pairs (a permutation and its reverse),
which cancels much of the variance; the standard error is taken over pairs. Exact Shapley
over 64 genes is out of reach (2^64 coalitions); `exact_shapley` serves small checks.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# f(args, inputs): inputs (m, *x.shape) with features on the last axis -> values (m, *out).
ValueFunction = Callable[[Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class ShapleyEstimate:
    """Estimated values (*out, features), their standard errors, and the sampling effort.

    `converged`: every standard error is at most `tolerance` times the largest |value| of its
    output (the check the study reports; more permutations tighten it as 1 / sqrt(n))."""

    values: np.ndarray
    standard_error: np.ndarray
    n_permutations: int
    tolerance: float

    @property
    def converged(self) -> bool:
        scale = np.abs(self.values).max(axis=-1, keepdims=True)
        return bool(np.all(self.standard_error <= self.tolerance * scale))


def _coalition_inputs(x: jax.Array, baseline: jax.Array, order: jax.Array) -> jax.Array:
    """(n + 1, *x.shape): the input with the first k features of `order` present, k = 0..n."""
    n = x.shape[-1]
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    present = jnp.arange(n + 1)[:, None] > rank[None, :]  # (n + 1, n)
    shape = (n + 1,) + (1,) * (x.ndim - 1) + (n,)
    return jnp.where(present.reshape(shape), x[None], baseline[None])


@functools.partial(jax.jit, static_argnums=0)
def permutation_contributions(f: ValueFunction, args: Any, x: jax.Array, baseline: jax.Array,
                              orders: jax.Array) -> jax.Array:
    """(permutations, features, *out): each feature's marginal contribution along each order."""
    baseline = jnp.broadcast_to(baseline, x.shape)

    def one(order):
        values = f(args, _coalition_inputs(x, baseline, order))  # (n + 1, *out)
        steps = values[1:] - values[:-1]  # contribution of order[k] at position k
        return jnp.zeros_like(steps).at[order].set(steps)

    return jax.lax.map(one, orders)


def sampled_shapley(f: ValueFunction, args: Any, x: jax.Array, baseline: jax.Array,
                    key: jax.Array, n_permutations: int = 256,
                    tolerance: float = 0.05) -> ShapleyEstimate:
    """Shapley values of x's last-axis features for f(args, .), from `n_permutations`
    permutations in antithetic pairs (rounded up to an even number)."""
    n_features = x.shape[-1]
    pairs = max(1, math.ceil(n_permutations / 2))
    forward = jax.vmap(lambda k: jax.random.permutation(k, n_features))(
        jax.random.split(key, pairs))
    orders = jnp.concatenate([forward, forward[:, ::-1]])
    contributions = np.asarray(permutation_contributions(f, args, x, baseline, orders))
    per_pair = 0.5 * (contributions[:pairs] + contributions[pairs:])
    values = np.moveaxis(per_pair.mean(axis=0), 0, -1)
    spread = per_pair.std(axis=0, ddof=1) if pairs > 1 else np.full(per_pair.shape[1:], np.inf)
    return ShapleyEstimate(values=values,
                           standard_error=np.moveaxis(spread / np.sqrt(pairs), 0, -1),
                           n_permutations=2 * pairs, tolerance=tolerance)


def exact_shapley(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                  baseline: np.ndarray) -> np.ndarray:
    """Shapley values by enumerating every coalition (2^n evaluations; n <= 12), for tests.
    f maps inputs (m, *x.shape) to (m,)."""
    n = x.shape[-1]
    if n > 12:
        raise ValueError(f"exact Shapley over {n} features needs 2^{n} evaluations")
    subsets = np.array(list(itertools.product([False, True], repeat=n)))
    values = np.asarray(f(np.where(subsets.reshape((-1,) + (1,) * (x.ndim - 1) + (n,)),
                                   x[None], np.broadcast_to(baseline, x.shape)[None])))
    index = {tuple(s): v for s, v in zip(subsets, values, strict=True)}
    phi = np.zeros(n)
    for subset in subsets:
        size = int(subset.sum())
        for j in np.flatnonzero(~subset):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            with_j = subset.copy()
            with_j[j] = True
            phi[j] += weight * (index[tuple(with_j)] - index[tuple(subset)])
    return phi
