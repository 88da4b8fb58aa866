"""OT pairing of one (context, dose) group: our pairing against POT's exact `ot.emd`.

Both sides pair n control cells with n perturbed cells in a 50-d PCA-like space (a Gaussian
cloud and a shifted, rescaled copy with its own noise) on the squared-Euclidean cost, in the
same run. Ours: `perturbjax.ot.pair_cells` (padded, jitted ott-jax Sinkhorn above
`exact_below`, row argmax); timed on a first call (with compilation) and a second call.
POT: `ot.emd` on the cost matrix, then the row argmax, as the original code did. Quality: the mean
squared distance of our pairs relative to the exact plan's (ours can be below 1: row argmaxes
need not form a one-to-one matching, the exact plan's do), how often our partner is the
exact plan's, and the share of perturbed cells used as partners. POT comes with the
optional `peers` extra (`pip install -e ".[peers]"`).

  python benchmarks/ot_speed.py [--sizes 500 2000 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot

from perturbjax.ot import PairingConfig, pair_cells


def group(n: int, seed: int = 0) -> np.ndarray:
    """2n cells: n controls, then n perturbed (a shifted, rescaled, noisy copy)."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.3, 50)
    control = rng.normal(size=(n, 50)) * scales
    perturbed = rng.normal(size=(n, 50)) * scales * 1.1 + rng.normal(0, 0.5, 50)
    return np.concatenate([control, perturbed]).astype(np.float32)


def ours(coords: np.ndarray, n: int, config: PairingConfig) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    pairs = pair_cells(coords, np.zeros(2 * n, int), np.repeat(["c", "p"], n), "c", config)
    order = np.argsort(pairs.control)
    return pairs.partner[order] - n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000])
    args = parser.parse_args()
    config = PairingConfig()
    print(f"ours: Sinkhorn, epsilon {config.relative_epsilon} x mean cost, exact below "
          f"{config.exact_below} cells\n")
    print("| cells per side | ours, first call (s) | ours, second call (s) | POT ot.emd (s) | "
          "speed-up (second call) | pair cost / exact | same partner as exact | "
          "perturbed cells used |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        coords = group(n)
        _, first = ours(coords, n, config)
        partner, second = ours(coords, n, config)
        start = time.perf_counter()
        cost = ot.dist(coords[:n].astype(np.float64), coords[n:].astype(np.float64))
        plan = ot.emd(np.full(n, 1 / n), np.full(n, 1 / n), cost, numItermax=10_000_000)
        exact = plan.argmax(axis=1)
        pot_seconds = time.perf_counter() - start
        ratio = cost[np.arange(n), partner].mean() / cost[np.arange(n), exact].mean()
        print(f"| {n:,} | {first:.2f} | {second:.2f} | {pot_seconds:.2f} | "
              f"{pot_seconds / second:.1f}x | {ratio:.3f} | {np.mean(partner == exact):.2f} | "
              f"{len(np.unique(partner)) / n:.2f} |")


if __name__ == "__main__":
    main()
