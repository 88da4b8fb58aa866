"""The original code's hyper-parameter grid as one compiled program against a Python loop, same run.

The problem is one outer fold of the drug-response study: Camptothecin on the GDSC pool
(929 lines x 3,138 genes, within-sample quantile features, 80% of the fold's training lines
fitted) when ../shared/data is present, else Gaussian features of the same shape. Both sides
train the same 48 grid points with the same code (`perturbjax.drug.grid.train_runs`):

- grid: all points in one call, one `jax.jit` program (24 vmapped members: the two epoch
  counts are snapshots of one run);
- loop: one call per point, as the original `ParameterGrid` loop; compiled programs are cached
  per shape (hidden sizes, batch size, epochs), so it compiles 12 times, not 48.

Each side is timed twice: the first call includes compilation, the second reuses it.

  python benchmarks/grid_speed.py [--points N] [--epochs-scale S]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from peak import matmul_peak

from perturbjax.data import shared_data_dir
from perturbjax.data.cellbench import (
    FIVE_LINE_PLATES,
    SYMBOLS_FILE,
    load_cellbench,
    read_gene_symbols,
)
from perturbjax.data.gdsc import load_gdsc
from perturbjax.drug.features import sum_counts_by_symbol
from perturbjax.drug.grid import ORIGINAL_GRID, GridRun, train_runs
from perturbjax.studies.drug_response import (
    Design,
    DrugStudyConfig,
    outer_and_inner_splits,
    select_genes,
    split_pool,
)


def problem(seed: int = 0):
    """GridData of one inner split of the study (or Gaussian stand-in), and its name."""
    data_dir = shared_data_dir()
    config = DrugStudyConfig()
    if data_dir is not None:
        bulk = load_gdsc(data_dir)
        cells = load_cellbench(data_dir / "cellbench", FIVE_LINE_PLATES,
                               read_gene_symbols(data_dir / SYMBOLS_FILE))
        pool, _ = split_pool(bulk, config)
        genes = select_genes(bulk, pool, sum_counts_by_symbol(cells), config)
        x = bulk.expression.loc[pool, genes].to_numpy(np.float64)
        y = bulk.response[pool].to_numpy(np.float64)
        name = f"GDSC Camptothecin, {x.shape[0]} lines x {x.shape[1]} genes"
    else:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(929, 3138))
        y = x[:, :20].sum(1) + rng.normal(size=929)
        name = "Gaussian features, 929 x 3,138"
    inner_train, inner_validation, _, _ = outer_and_inner_splits(len(y), config)[0]
    data, _ = Design(x, y, config).folds([inner_train])
    return data, inner_validation, name


def training_flops(points, data) -> float:
    """Forward + backward multiply-adds of every step of every point (6 x batch x weights)."""
    n_train, n_genes = int(data.n_train.min()), data.features.shape[-1]
    total = 0.0
    for p in points:
        widths = (n_genes, *p.hidden, 1)
        weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        total += p.epochs * (n_train // p.batch_size) * p.batch_size * 6 * weights
    return total


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=len(ORIGINAL_GRID),
                        help="first N points of the original grid (default: all 48)")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every point's epochs (e.g. 0.1 for a quick look)")
    args = parser.parse_args()
    points = [dataclasses.replace(p, epochs=max(1, round(p.epochs * args.epochs_scale)))
              for p in ORIGINAL_GRID[: args.points]]
    data, validation, name = problem()
    runs = [GridRun(p, 0, 0) for p in points]
    peak = matmul_peak()
    flops = training_flops(points, data)
    print(f"problem: {name}; {len(points)} grid points, one fold, one seed; "
          f"{flops / 1e12:.2f} TFLOP of training; matmul peak {peak:.0f} GFLOP/s")

    grid_first = timed(lambda: train_runs(runs, data))
    grid_again = timed(lambda: train_runs(runs, data))
    loop_first = timed(lambda: [train_runs([r], data) for r in runs])
    loop_again = timed(lambda: [train_runs([r], data) for r in runs])
    together = train_runs(runs, data).predictions
    alone = np.stack([train_runs([r], data).predictions[0] for r in runs])
    rate = lambda seconds: f"{flops / seconds / 1e9:.0f} ({flops / seconds / 1e9 / peak:.0%})"  # noqa: E731
    print("| program | first call, with compilation (s) | second call (s) | GFLOP/s (of peak) |")
    print("|---|---|---|---|")
    print(f"| grid: one jit, vmapped members | {grid_first:.1f} | {grid_again:.1f} | "
          f"{rate(grid_again)} |")
    print(f"| loop: one call per point | {loop_first:.1f} | {loop_again:.1f} | "
          f"{rate(loop_again)} |")
    print(f"| ratio loop / grid | {loop_first / grid_first:.2f}x | "
          f"{loop_again / grid_again:.2f}x | |")
    y = data.targets[0, validation]
    r2 = lambda p: 1 - ((y - p[:, validation]) ** 2).sum(1) / ((y - y.mean()) ** 2).sum()  # noqa: E731
    print("\nSame runs, grid vs loop (vmapped and single matmuls sum in different orders; "
          "training amplifies the rounding differences):")
    print("| learning rate | max abs. prediction difference | max abs. validation R^2 difference |")
    print("|---|---|---|")
    for lr in sorted({p.learning_rate for p in points}):
        pick = np.array([p.learning_rate == lr for p in points])
        print(f"| {lr:g} | {np.abs(together[pick] - alone[pick]).max():.2e} | "
              f"{np.abs(r2(together[pick]) - r2(alone[pick])).max():.3f} |")


if __name__ == "__main__":
    main()
