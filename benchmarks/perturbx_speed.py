"""PerturbX folds x seeds as one vmapped program against the same members one after another.

The problem is the study's: the McFarland-like set (24 lines, 2,000 genes) when ../shared/data
is present, else the toy set; 6 folds x 3 seeds, the default model (64 selected genes, bags of
64 cells, 4 bags per step). Both sides run the same epoch function of the shared loop
(`perturbjax.train.Trainer`):

- program: the 18 members in one compiled epoch (vmap over members; the cell pool shared);
- sequential: one member at a time through a one-member program (compiled once, reused for
  every member), as a loop over folds and seeds would run.

Seconds are per epoch of all 18 members, compiled (median over `--epochs` epochs after the
first); FLOPs are XLA's count of one step times the steps.

  python benchmarks/perturbx_speed.py [--epochs N]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from peak import matmul_peak

from perturbjax.data import shared_data_dir
from perturbjax.data.bags import BagData
from perturbjax.data.mixseq import MIXSEQ_SPEC
from perturbjax.data.synthetic_mixseq import make_mixseq_like, make_toy_mixseq
from perturbjax.models import perturbx
from perturbjax.studies.perturbx import (
    PerturbXStudyConfig,
    fold_rows,
    gene_weights,
    line_status,
    make_folds,
    shared_arrays,
)
from perturbjax.studies.perturbx.data import prepare_cells
from perturbjax.train import Folds, TrainConfig, Trainer


def problem(config: PerturbXStudyConfig):
    data_dir = shared_data_dir()
    raw = (make_mixseq_like(data_dir) if data_dir is not None and (data_dir / "gdsc").is_dir()
           else make_toy_mixseq(n_lines=24, n_wild_type=7, n_genes=2000))
    cells = prepare_cells(raw)
    bags = BagData.from_anndata(cells, MIXSEQ_SPEC)
    status = line_status(cells, bags, config.status_key)
    rows = fold_rows(bags, make_folds(status, config.n_folds, 0), 0)
    folds = Folds(rows, rows, arrays={"gene_weights": gene_weights(bags, rows, "response")})
    return bags, folds, f"{len(bags.contexts)} lines x {len(bags.genes)} genes"


def seconds_per_epoch(trainer: Trainer, bags: BagData, folds: Folds, seeds, shared,
                      epochs: int) -> tuple[float, float]:
    """(median compiled seconds per epoch, XLA flops per epoch) of one program."""
    table = bags.table()
    state = trainer.init(seeds, table, shared, folds)
    member_folds = folds.per_member(len(seeds), trainer.config.batch_size)
    flops = trainer.cost_per_epoch(state, table, table, shared, folds)
    state = trainer.run_epoch(state, table, table, 0, shared, member_folds, folds)
    jax.block_until_ready(state)
    times = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        state = trainer.run_epoch(state, table, table, epoch, shared, member_folds, folds)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per program")
    args = parser.parse_args()
    config = PerturbXStudyConfig()
    bags, folds, name = problem(config)
    shared = jax.device_put(shared_arrays(bags, config))
    train_config = TrainConfig(epochs=args.epochs + 1, batch_size=config.batch_size,
                               learning_rates=(config.learning_rate,), patience=None,
                               select_best=False,
                               learning_rate_multipliers=(("logits", config.selector_speed),))
    steps = (args.epochs + 1) * (folds.train_rows.shape[1] // config.batch_size)
    trainer = Trainer(perturbx.build(config.model, len(bags.genes), steps), train_config)
    peak = matmul_peak()
    print(f"{name}; {folds.n_folds} folds x {len(config.seeds)} seeds; "
          f"matmul peak {peak:.0f} GFLOP/s\n")

    together, flops = seconds_per_epoch(trainer, bags, folds, config.seeds, shared, args.epochs)
    alone, one_member = 0.0, 0.0
    for fold in range(folds.n_folds):
        single = Folds(folds.train_rows[fold:fold + 1], folds.validation_rows[fold:fold + 1],
                       {k: v[fold:fold + 1] for k, v in folds.arrays.items()})
        for seed in config.seeds:
            seconds, one_member = seconds_per_epoch(trainer, bags, single, (seed,), shared,
                                                    args.epochs)
            alone += seconds
    sequential_flops = one_member * folds.n_folds * len(config.seeds)
    rate = lambda f, s: f"{f / s / 1e9:.1f} ({f / s / 1e9 / peak:.0%})"  # noqa: E731
    print("| program | s / epoch, all members | GFLOP / epoch | GFLOP/s (of peak) |")
    print("|---|---|---|---|")
    print(f"| one vmapped program | {together:.3f} | {flops / 1e9:.1f} | {rate(flops, together)} |")
    print(f"| members one by one | {alone:.3f} | {sequential_flops / 1e9:.1f} | "
          f"{rate(sequential_flops, alone)} |")
    print(f"\nspeed-up of the vmapped program: {alone / together:.2f}x")


if __name__ == "__main__":
    main()
