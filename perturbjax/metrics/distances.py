"""Distances between two groups of cells, as pertpy (>= 1.0.4) defines them (`specs/metrics.md`).

Pairwise terms are summed block by block (`lax.map` over chunks of rows of X against all of Y,
and over the tiles on and above the diagonal of a within-group term), so memory stays at a
block however many cells there are. Inputs are centred on their joint
mean first, which keeps the |x|^2 + |y|^2 - 2 x.y expansion accurate in float32. Each pair's
term is computed in float32 (the matrix products) and summed in float64: an E-distance is a
difference of means some 20-70 times larger than itself, and float32 sums left it ~1e-5 off
in relative terms; float64 sums keep it within ~3e-7 of a float64 computation
(`tests/metrics/test_distances_and_expression.py`) at no measurable cost
(`benchmarks/metric_speed.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers import linear

CHUNK = 64  # rows per block of a cross term: 64 x m float32 terms stay in cache
TILE = 512  # side of a tile of a within-group term (both chosen by timing n = 2,000 and 5,000)


def _float64_sums(distance: Callable) -> Callable:
    """Run a jitted distance with 64-bit types enabled, so that its sums (and only they:
    the cells stay float32) accumulate in float64.

    Both groups are padded with zero rows to their size bucket (`_padded`), and the true
    counts are passed as values: one compiled program serves every group size in a bucket (the
    held-out contexts and the replicate ceiling's halves of a run hit many sizes), instead
    of one per exact size. Padded rows are masked out of every sum.
    """
    @functools.wraps(distance)
    def run(x, y, *args, **kwargs) -> jax.Array:
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        with jax.enable_x64(True):
            return distance(_padded(x), _padded(y), jnp.int64(len(x)), jnp.int64(len(y)),
                            *args, **kwargs)
    return run


def _padded(cells: np.ndarray) -> np.ndarray:
    """`cells` with zero rows up to the size of its bucket: the next power of two from CHUNK
    to 1,024 cells (little work wasted at these sizes), then the next multiple of 512."""
    n = len(cells)
    rows = max(CHUNK, 1 << (n - 1).bit_length()) if n <= 1024 else -(-n // 512) * 512
    return np.concatenate([cells, np.zeros((rows - len(cells), cells.shape[1]), np.float32)])


def _cross_sum(x: jax.Array, y: jax.Array, n: jax.Array, m: jax.Array,
               f: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """sum_{i<n, j<m} f(||x_i - y_j||^2), over chunks of CHUNK rows of x against all of y."""
    y_sq = jnp.sum(y * y, axis=1)
    column_kept = (jnp.arange(y.shape[0]) < m)[None, :]

    def chunk_sum(i):
        rows = jax.lax.dynamic_slice_in_dim(x, i * CHUNK, CHUNK)
        sq = jnp.sum(rows * rows, axis=1)[:, None] + y_sq[None, :] - 2.0 * rows @ y.T
        keep = ((i * CHUNK + jnp.arange(CHUNK)) < n)[:, None] & column_kept
        values = f(jnp.maximum(sq, 0.0))
        return jnp.sum(jnp.where(keep, values, 0.0).astype(jnp.float64))

    return jnp.sum(jax.lax.map(chunk_sum, jnp.arange(x.shape[0] // CHUNK)))


def _within_sum(x: jax.Array, n: jax.Array, f: Callable[[jax.Array], jax.Array],
                self_pairs: bool) -> jax.Array:
    """sum_{i != j < n} f(||x_i - x_j||^2) (with i == j too if `self_pairs`), over ordered
    pairs.

    The matrix is symmetric, so only its tiles on and above the diagonal are computed (TILE x
    TILE each), those above counted twice: half the work of a full pass. The diagonal's
    squared distance is exactly 0, not the expansion's rounding of it.
    """
    n_tiles = -(-x.shape[0] // TILE)
    padded = jnp.zeros((n_tiles * TILE, x.shape[1]), x.dtype).at[:x.shape[0]].set(x)
    squares = jnp.sum(padded * padded, axis=1)
    rows, cols = np.triu_indices(n_tiles)

    def tile_sum(pair):
        i, j = pair
        a, b = (jax.lax.dynamic_slice_in_dim(padded, k * TILE, TILE) for k in (i, j))
        a_sq, b_sq = (jax.lax.dynamic_slice_in_dim(squares, k * TILE, TILE) for k in (i, j))
        index_a, index_b = i * TILE + jnp.arange(TILE), j * TILE + jnp.arange(TILE)
        diagonal = index_a[:, None] == index_b[None, :]
        sq = jnp.where(diagonal, 0.0, a_sq[:, None] + b_sq[None, :] - 2.0 * a @ b.T)
        keep = (index_a < n)[:, None] & (index_b < n)[None, :]
        keep = keep if self_pairs else keep & ~diagonal
        total = jnp.sum(jnp.where(keep, f(jnp.maximum(sq, 0.0)), 0.0).astype(jnp.float64))
        return jnp.where(i == j, 1.0, 2.0) * total

    return jnp.sum(jax.lax.map(tile_sum, (jnp.asarray(rows), jnp.asarray(cols))))


def _centred(x: jax.Array, y: jax.Array, n: jax.Array, m: jax.Array):
    """Both groups minus their joint mean (padded zero rows add nothing to the sums)."""
    centre = (jnp.sum(x, 0, jnp.float64) + jnp.sum(y, 0, jnp.float64)) / (n + m)
    return (x - centre).astype(jnp.float32), (y - centre).astype(jnp.float32)


def _mean_cross(x, y, n, m, f):
    return _cross_sum(x, y, n, m, f) / (n * m)


def _mean_within(x, n, f, self_pairs: bool = False):
    return _within_sum(x, n, f, self_pairs) / (n * n if self_pairs else n * (n - 1))


def _mean_difference(x, y) -> np.ndarray:
    return np.asarray(x).mean(0, dtype=np.float64) - np.asarray(y).mean(0, dtype=np.float64)


def euclidean(x, y) -> float:
    """|| mean(X) - mean(Y) || (two means: NumPy in float64, no compiled program needed)."""
    return float(np.linalg.norm(_mean_difference(x, y)))


def mmd_linear(x, y) -> float:
    """|| mean(X) - mean(Y) ||^2 (pertpy's default MMD kernel)."""
    return float(np.sum(_mean_difference(x, y) ** 2))


@_float64_sums
@jax.jit
def mean_pairwise(x: jax.Array, y: jax.Array, n: jax.Array, m: jax.Array) -> jax.Array:
    """Mean over all (i, j) of ||x_i - y_j||."""
    x, y = _centred(x, y, n, m)
    return _mean_cross(x, y, n, m, jnp.sqrt)


@_float64_sums
@functools.partial(jax.jit, static_argnames="squared")
def edistance(x: jax.Array, y: jax.Array, n: jax.Array, m: jax.Array,
              squared: bool = False) -> jax.Array:
    """Energy distance 2 E||x - y|| - E||x - x'|| - E||y - y'|| (self-pairs excluded).

    `squared=True` is the legacy pertpy (< 2025-03) variant on squared distances, which
    equals 2 x linear MMD up to the self-pair correction; offered only to reproduce old tables.
    """
    x, y = _centred(x, y, n, m)
    f = (lambda s: s) if squared else jnp.sqrt
    return 2.0 * _mean_cross(x, y, n, m, f) - _mean_within(x, n, f) - _mean_within(y, m, f)


@_float64_sums
@functools.partial(jax.jit, static_argnames="gamma")
def mmd_rbf(x: jax.Array, y: jax.Array, n: jax.Array, m: jax.Array,
            gamma: float = 1.0) -> jax.Array:
    """mean k(x, x') + mean k(y, y') - 2 mean k(x, y), k = exp(-gamma ||a - b||^2).

    The means run over all pairs, self-pairs included (as scikit-learn's `rbf_kernel` mean).
    """
    x, y = _centred(x, y, n, m)
    k = lambda s: jnp.exp(-gamma * s)  # noqa: E731
    return (_mean_within(x, n, k, self_pairs=True) + _mean_within(y, m, k, self_pairs=True)
            - 2.0 * _mean_cross(x, y, n, m, k))


@jax.jit
def wasserstein(x: jax.Array, y: jax.Array) -> jax.Array:
    """Entropic OT cost (ott-jax Sinkhorn `reg_ot_cost`), uniform weights, squared-Euclidean
    cost, ott-jax's default epsilon (0.05 x std of the cost; see `sinkhorn_epsilon`)."""
    return linear.solve(pointcloud.PointCloud(x, y)).reg_ot_cost


@jax.jit
def sinkhorn_epsilon(x: jax.Array, y: jax.Array) -> jax.Array:
    """The epsilon that ott-jax's default gives `wasserstein(x, y)` (reported with results)."""
    return pointcloud.PointCloud(x, y).epsilon


DISTANCES: dict[str, Callable[..., Any]] = {
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
    is NaN when the prediction is the control cells themselves, or when d(control, pred)
    vanishes next to d(real, pred) (below 1e-6 of it). A kernel estimate of d(control,
    control) is float32 noise, not 0, and a ratio over it would be noise too.
    """
    is_control = np.shape(pred) == np.shape(control) and np.array_equal(pred, control)
    real, pred, control = (jnp.asarray(a, jnp.float32) for a in (real, pred, control))
    out = {}
    for name, distance in DISTANCES.items():
        raw = float(distance(real, pred))
        to_control = float(distance(control, pred))
        out[name] = raw
        out[f"{name}_ratio"] = (raw / to_control if not is_control and to_control > 1e-6 * abs(raw)
                                else float("nan"))
    out["wasserstein_epsilon"] = float(sinkhorn_epsilon(real, pred))
    return out
