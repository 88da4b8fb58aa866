"""Pairing each control cell with a perturbed cell of its own group by optimal transport.

The OT variants of the multi-task family (and scButterfly's translator) train on
(control cell -> perturbed cell) pairs. Within every (context, condition) group, the control
cells of that context are coupled to the group's perturbed cells on the squared-Euclidean
cost of PCA coordinates, and each control cell takes one partner: the argmax of its row of
the coupling (or a draw from the row).

- Large groups: entropic OT with ott-jax (Sinkhorn, epsilon relative to the group's mean
  cost). Groups are padded with zero-weight points to a few bucket sizes, so one compiled,
  vmapped solver serves every group of a bucket.
- Small groups (both sides at most `exact_below` cells): an exact optimal assignment
  (scipy's Hungarian solver); when controls outnumber perturbed cells, the perturbed cells
  are repeated so each is used at most ceil(n_control / n_perturbed) times.

Partners are looked up inside the group and returned as indices of the whole data set, so a
partner from another context or dose cannot occur (the original code applied group-local indices
to the whole table, pairing most cells with the wrong cell type).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers import linear
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger("perturbjax")

# Padded group sizes, sqrt(2) apart: at most ~2x the work of an unpadded solve.
BUCKETS = (256, 362, 512, 724, 1024, 1448, 2048, 2896, 4096, 5793, 8192, 11585, 16384)


@dataclasses.dataclass(frozen=True)
class PairingConfig:
    """How pairs are made.

    Attributes:
      relative_epsilon: Sinkhorn's epsilon as a fraction of the group's mean cost.
      exact_below: groups with at most this many cells on both sides are matched exactly.
      sample: draw each partner from its coupling row instead of taking the argmax.
      buckets: padded group sizes (a group larger than the largest is an error).
      max_iterations: Sinkhorn's iteration cap.
    """

    relative_epsilon: float = 0.01
    exact_below: int = 256
    sample: bool = False
    buckets: tuple[int, ...] = BUCKETS
    max_iterations: int = 2000


@dataclasses.dataclass(frozen=True)
class Pairs:
    """One row per (control cell, condition): `control` and `partner` index the data set."""

    control: np.ndarray
    partner: np.ndarray
    condition: np.ndarray
    context: np.ndarray


def _bucket(n: int, buckets: tuple[int, ...]) -> int:
    for size in buckets:
        if n <= size:
            return size
    raise ValueError(f"a group of {n} cells exceeds the largest pairing bucket "
                     f"{buckets[-1]}; add a larger bucket to PairingConfig.buckets")


def _solve(x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array, relative_epsilon: float,
           max_iterations: int):
    """Sinkhorn on one padded group; epsilon = relative_epsilon x the mean cost over real
    pairs, computed from the moments (no cost matrix is formed for it)."""
    mean_x, mean_y = a @ x, b @ y
    mean_cost = a @ (x**2).sum(-1) + b @ (y**2).sum(-1) - 2 * mean_x @ mean_y
    geom = pointcloud.PointCloud(x, y, epsilon=relative_epsilon * mean_cost)
    return linear.solve(geom, a=a, b=b, max_iterations=max_iterations)


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def sinkhorn_couplings(x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array,
                       relative_epsilon: float, max_iterations: int
                       ) -> tuple[jax.Array, jax.Array]:
    """Couplings (groups, n, m) of padded groups (padding has zero weight), and whether
    each solve converged."""
    def one(x, y, a, b):
        out = _solve(x, y, a, b, relative_epsilon, max_iterations)
        return out.matrix, out.converged
    return jax.vmap(one)(x, y, a, b)


@functools.partial(jax.jit, static_argnames=("max_iterations", "sample"))
def sinkhorn_partners(x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array, key: jax.Array,
                      relative_epsilon: float, max_iterations: int, sample: bool
                      ) -> tuple[jax.Array, jax.Array]:
    """(groups, n) partner of each source point among the real targets, on the device (the
    coupling never leaves it), and whether each solve converged."""
    def one(x, y, a, b, key):
        out = _solve(x, y, a, b, relative_epsilon, max_iterations)
        scores = jnp.where(b[None, :] > 0, out.matrix, 0.0)
        if sample:
            partners = jax.random.categorical(key, jnp.log(scores), axis=-1)
        else:
            partners = scores.argmax(axis=-1)
        return partners, out.converged
    return jax.vmap(one)(x, y, a, b, jax.random.split(key, x.shape[0]))


def _exact_partners(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An optimal assignment of each row of x to a row of y (y repeated if it is shorter)."""
    repeats = -(-len(x) // len(y))
    targets = np.tile(np.arange(len(y)), repeats)
    cost = ((x[:, None, :] - y[targets][None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    partners = np.empty(len(x), int)
    partners[rows] = targets[cols]
    return partners


def pair_cells(coordinates: np.ndarray, context: np.ndarray, condition: np.ndarray,
               control_value: str, config: PairingConfig = PairingConfig(),
               seed: int = 0) -> Pairs:
    """Pair every control cell with one perturbed cell of its context under each condition.

    coordinates: (cells, d), e.g. PCA coordinates; context / condition: one label per cell.
    """
    coordinates = np.asarray(coordinates, np.float32)
    context, condition = np.asarray(context).astype(str), np.asarray(condition).astype(str)
    if not (len(coordinates) == len(context) == len(condition)):
        raise ValueError("coordinates, context and condition must have one row per cell")
    groups = []  # (context, condition, control indices, perturbed indices)
    for c in np.unique(context):
        controls = np.flatnonzero((context == c) & (condition == control_value))
        for p in np.unique(condition[(context == c) & (condition != control_value)]):
            perturbed = np.flatnonzero((context == c) & (condition == p))
            if len(controls):
                groups.append((c, p, controls, perturbed))

    partners: dict[int, np.ndarray] = {}
    by_bucket: dict[int, list[int]] = {}
    for g, (_, _, controls, perturbed) in enumerate(groups):
        if max(len(controls), len(perturbed)) <= config.exact_below:
            local = _exact_partners(coordinates[controls], coordinates[perturbed])
            partners[g] = perturbed[local]
        else:
            size = _bucket(max(len(controls), len(perturbed)), config.buckets)
            by_bucket.setdefault(size, []).append(g)
    for size, members in by_bucket.items():
        key = jax.random.fold_in(jax.random.PRNGKey(seed), size)
        local = _solve_bucket(coordinates, groups, members, size, config, key)
        for g, row in zip(members, local, strict=True):
            _, _, controls, perturbed = groups[g]
            partners[g] = perturbed[row[: len(controls)]]

    order = range(len(groups))
    return Pairs(
        control=np.concatenate([groups[g][2] for g in order]).astype(np.int64),
        partner=np.concatenate([partners[g] for g in order]).astype(np.int64),
        condition=np.concatenate([[groups[g][1]] * len(groups[g][2]) for g in order]),
        context=np.concatenate([[groups[g][0]] * len(groups[g][2]) for g in order]),
    )


def _solve_bucket(coordinates: np.ndarray, groups: list, members: list[int], size: int,
                  config: PairingConfig, key: jax.Array) -> np.ndarray:
    """Local partner indices of the groups `members`, padded to `size`, in one vmapped
    Sinkhorn call."""
    d = coordinates.shape[1]
    x = np.zeros((len(members), size, d), np.float32)
    y = np.zeros_like(x)
    a = np.zeros((len(members), size), np.float32)
    b = np.zeros_like(a)
    for i, g in enumerate(members):
        _, _, controls, perturbed = groups[g]
        x[i, : len(controls)], y[i, : len(perturbed)] = (coordinates[controls],
                                                        coordinates[perturbed])
        a[i, : len(controls)], b[i, : len(perturbed)] = 1 / len(controls), 1 / len(perturbed)
    partners, converged = sinkhorn_partners(x, y, a, b, key, config.relative_epsilon,
                                            config.max_iterations, config.sample)
    if not np.all(converged):
        logger.warning("Sinkhorn did not converge in %d iterations for %d of %d groups of "
                    "bucket %d; partners come from the last iterate", config.max_iterations,
                    int((~np.asarray(converged)).sum()), len(members), size)
    return np.asarray(partners)
