"""The machine's float32 matmul rate, measured in the benchmark's own run."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
    """Achieved float32 GFLOP/s of a square jnp.dot, the best of `repeats`."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
