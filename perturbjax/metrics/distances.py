"""Distances between two groups of cells, as pertpy (>= 1.0.4) defines them (`specs/metrics.md`).

Pairwise terms are summed block by block (`lax.map` over chunks of rows of X against all of Y),
so memory stays at chunk x m however many cells there are. Inputs are centred on their joint
mean first, which keeps the |x|^2 + |y|^2 - 2 x.y expansion accurate in float32. Each pair's
term is computed in float32 (the matrix products) and summed in float64: an E-distance is a
difference of means some 20-70 times larger than itself, and float32 sums left it ~1e-5 off
in relative terms; float64 sums keep it within ~3e-7 of a float64 computation
(`tests/test_metrics.py`) at no measurable cost (`benchmarks/metric_speed.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers import linear

CHUNK = 64  # rows per block: 64 x m float32 terms stay in cache (fastest of 32..512 at m = 5,000)


def _float64_sums(distance: Callable) -> Callable:
    """Run a jitted distance on float32 inputs with 64-bit types enabled, so its sums (and
    only they: inputs stay float32) accumulate in float64."""
    @functools.wraps(distance)
    def run(x, y, *args, **kwargs) -> jax.Array:
        with jax.enable_x64(True):
            return distance(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                            *args, **kwargs)
    return run


def _blockwise_sum(x: jax.Array, y: jax.Array, f: Callable[[jax.Array], jax.Array],
                   within: bool = False, self_pairs: bool = False) -> jax.Array:
    """sum_{i,j} f(||x_i - y_j||^2). `within`: y is x, so the diagonal's squared distance is
    exactly 0 (not the expansion's rounding of it), and its pairs are skipped unless
    `self_pairs`."""
    n = x.shape[0]
    n_chunks = -(-n // CHUNK)
    padded = jnp.zeros((n_chunks * CHUNK, x.shape[1]), x.dtype).at[:n].set(x)
    y_sq = jnp.sum(y * y, axis=1)

    def chunk_sum(i):
        rows = jax.lax.dynamic_slice_in_dim(padded, i * CHUNK, CHUNK)
        sq = jnp.sum(rows * rows, axis=1)[:, None] + y_sq[None, :] - 2.0 * rows @ y.T
        row_index = i * CHUNK + jnp.arange(CHUNK)
        keep = (row_index < n)[:, None]
        if within:
            diagonal = row_index[:, None] == jnp.arange(y.shape[0])[None, :]
            sq = jnp.where(diagonal, 0.0, sq)
            keep = keep if self_pairs else keep & ~diagonal
        values = f(jnp.maximum(sq, 0.0))
        return jnp.sum(jnp.where(keep, values, 0.0).astype(jnp.float64))

    return jnp.sum(jax.lax.map(chunk_sum, jnp.arange(n_chunks)))


def _centred(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    centre = (jnp.sum(x, 0, jnp.float64) + jnp.sum(y, 0, jnp.float64)) / (x.shape[0] + y.shape[0])
    return (x - centre).astype(jnp.float32), (y - centre).astype(jnp.float32)


def _mean_cross(x, y, f):
    return _blockwise_sum(x, y, f) / (x.shape[0] * y.shape[0])


def _mean_within(x, f, self_pairs: bool = False):
    n = x.shape[0]
    return _blockwise_sum(x, x, f, within=True, self_pairs=self_pairs) / (
        n * n if self_pairs else n * (n - 1))


def _mean_difference(x: jax.Array, y: jax.Array) -> jax.Array:
    return x.mean(0, dtype=jnp.float64) - y.mean(0, dtype=jnp.float64)


@_float64_sums
@jax.jit
def euclidean(x: jax.Array, y: jax.Array) -> jax.Array:
    """|| mean(X) - mean(Y) ||."""
    return jnp.linalg.norm(_mean_difference(x, y))


@_float64_sums
@jax.jit
def mmd_linear(x: jax.Array, y: jax.Array) -> jax.Array:
    """|| mean(X) - mean(Y) ||^2 (pertpy's default MMD kernel)."""
    return jnp.sum(_mean_difference(x, y) ** 2)


@_float64_sums
@jax.jit
def mean_pairwise(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over all (i, j) of ||x_i - y_j||."""
    x, y = _centred(x, y)
    return _mean_cross(x, y, jnp.sqrt)


@_float64_sums
@functools.partial(jax.jit, static_argnames="squared")
def edistance(x: jax.Array, y: jax.Array, squared: bool = False) -> jax.Array:
    """Energy distance 2 E||x - y|| - E||x - x'|| - E||y - y'|| (self-pairs excluded).

    `squared=True` is the legacy pertpy (< 2025-03) variant on squared distances, which
    equals 2 x linear MMD up to the self-pair correction; offered only to reproduce old tables.
    """
    x, y = _centred(x, y)
    f = (lambda s: s) if squared else jnp.sqrt
    return 2.0 * _mean_cross(x, y, f) - _mean_within(x, f) - _mean_within(y, f)


@_float64_sums
@functools.partial(jax.jit, static_argnames="gamma")
def mmd_rbf(x: jax.Array, y: jax.Array, gamma: float = 1.0) -> jax.Array:
    """mean k(x, x') + mean k(y, y') - 2 mean k(x, y), k = exp(-gamma ||a - b||^2).

    The means run over all pairs, self-pairs included (as scikit-learn's `rbf_kernel` mean).
    """
    x, y = _centred(x, y)
    k = lambda s: jnp.exp(-gamma * s)  # noqa: E731
    return (_mean_within(x, k, self_pairs=True) + _mean_within(y, k, self_pairs=True)
            - 2.0 * _mean_cross(x, y, k))


@jax.jit
def wasserstein(x: jax.Array, y: jax.Array) -> jax.Array:
    """Entropic OT cost (ott-jax Sinkhorn `reg_ot_cost`), uniform weights, squared-Euclidean
    cost, ott-jax's default epsilon (0.05 x std of the cost; see `sinkhorn_epsilon`)."""
    return linear.solve(pointcloud.PointCloud(x, y)).reg_ot_cost


@jax.jit
def sinkhorn_epsilon(x: jax.Array, y: jax.Array) -> jax.Array:
    """The epsilon that ott-jax's default gives `wasserstein(x, y)` (reported with results)."""
    return pointcloud.PointCloud(x, y).epsilon


DISTANCES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "euclidean": euclidean,
    "edistance": edistance,
    "mean_pairwise": mean_pairwise,
    "mmd_linear": mmd_linear,
    "mmd_rbf": mmd_rbf,
    "wasserstein": wasserstein,
}


def compare_distances(real: np.ndarray, pred: np.ndarray, control: np.ndarray) -> dict[str, float]:
    """Each distance d(real, pred), and pertpy's "simple" ratio d(real, pred) / d(control, pred).

    `wasserstein_epsilon` is the Sinkhorn epsilon of the (real, pred) pair. A ratio below 1
    means the prediction lies closer to the real perturbed cells than to the control cells; it
    is NaN when d(control, pred) vanishes next to d(real, pred) (below 1e-6 of it: a
    prediction equal to the control, up to float32 rounding).
    """
    real, pred, control = (jnp.asarray(a, jnp.float32) for a in (real, pred, control))
    out = {}
    for name, distance in DISTANCES.items():
        raw = float(distance(real, pred))
        to_control = float(distance(control, pred))
        out[name] = raw
        out[f"{name}_ratio"] = raw / to_control if to_control > 1e-6 * abs(raw) else float("nan")
    out["wasserstein_epsilon"] = float(sinkhorn_epsilon(real, pred))
    return out
