"""Epoch time of MTAe for 1 vs 3 vmapped seeds, batch 64 and 256, with achieved GFLOP/s.

Both batch orders are measured: each seed shuffling on its own (the default) and one order
shared by all seeds (`TrainConfig.shared_batch_order`), where vmap makes each layer one wide
matmul.

The peer is the same loop run for one seed at a time (three sequential runs), measured in the
same process; the matmul peak is a float32 jnp.dot measured in the same run. Uses the Kang
validation file when present (PERTURBJAX_DATA or ../shared/data), else the synthetic data.

  python benchmarks/train_speed.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np
from peak import matmul_peak

from perturbjax.data import (
    KANG_SPEC,
    SYNTHETIC_SPEC,
    load_kang,
    make_perturbation_data,
    shared_data_dir,
)
from perturbjax.models import mtae
from perturbjax.models.fitting import ConditionEncoding, Task, batch_of
from perturbjax.train import TrainConfig, Trainer


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def epoch_seconds(objective, config: TrainConfig, seeds, data, epochs: int):
    """Median seconds per epoch (compiled, excluding the first) and XLA's flops per epoch."""
    trainer = Trainer(objective, config)
    state = trainer.init(seeds, data)
    flops = trainer.cost_per_epoch(state, data, data)
    state = trainer.run_epoch(state, data, data, 0)
    jax.block_until_ready(state)
    times = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        state = trainer.run_epoch(state, data, data, epoch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    root = shared_data_dir()
    if root and (root / "kang" / "valid_pbmc.h5ad").is_file():
        adata, spec, name = load_kang(root / "kang", splits=("valid",)), KANG_SPEC, "Kang valid"
    else:
        adata, spec, name = make_perturbation_data(), SYNTHETIC_SPEC, "synthetic"
    encoding = ConditionEncoding.from_adata(adata, spec)
    data = batch_of(adata, encoding.codes(adata, spec))
    model_config, base = mtae.DEFAULT
    objective = mtae.build(model_config, Task.of(adata.n_vars, encoding.labels, encoding.control))
    peak = matmul_peak()
    print(f"data: {name}, {adata.n_obs} cells x {adata.n_vars} genes; devices: {jax.devices()}")
    print(f"matmul peak (float32 2048^3 jnp.dot): {peak:.1f} GFLOP/s\n")
    print("| batch order | batch | seeds | s/epoch | 3 sequential single-seed epochs (s) | "
          "ratio | GFLOP/epoch | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shared in (False, True):
        for batch in (64, 256):
            config = dataclasses.replace(base, batch_size=batch, learning_rates=(1e-3,),
                                         epochs=args.epochs + 1, shared_batch_order=shared)
            one, one_flops = epoch_seconds(objective, config, [1], data, args.epochs)
            three, three_flops = epoch_seconds(objective, config, [1, 2, 19193], data,
                                               args.epochs)
            for seeds, seconds, flops in ((1, one, one_flops), (3, three, three_flops)):
                rate = flops / seconds / 1e9
                ratio = f"{seconds / (3 * one):.2f}" if seeds == 3 else "-"
                print(f"| {'shared' if shared else 'per seed'} | {batch} | {seeds} | "
                      f"{seconds:.3f} | {3 * one:.3f} | {ratio} | {flops / 1e9:.1f} | "
                      f"{rate:.1f} | {100 * rate / peak:.0f}% |")


if __name__ == "__main__":
    main()
