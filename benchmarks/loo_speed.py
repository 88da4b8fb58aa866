"""The leave-one-out table as one program against the per-context loop: same model, same run.

Both arms are the benchmark's own launcher (`experiments/ood_benchmark.py`) on the same data,
model, seeds and epochs, every context held out, no figures or checkpoints:

- loop: one program per held-out context, as the table is run by default (the pools differ
  in size, so each context compiles its own);
- one program: `--one_program`, every context a fold of one program (`models.pooled`).

Each arm runs in a fresh process, one after the other in this invocation, so nothing compiled
is shared and both meet the same machine. Reported: wall time per arm (loading, training and
scoring the table), training seconds, the ratio, training GFLOP/s against the matmul peak
measured in the same run (XLA's count of the useful steps: padding excluded), and how far the
two tables are apart.

  python benchmarks/loo_speed.py [--data PATH] [--model mtae] [--epochs 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from peak import matmul_peak

from perturbjax.data.splits import stratified_validation_mask
from perturbjax.files import write_text
from perturbjax.models import FitSettings, get_model
from perturbjax.models.fitting import ConditionEncoding, TrainingPool, batch_of, context_codes
from perturbjax.studies import ood
from perturbjax.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
KANG = ROOT.parent / "shared" / "data" / "kang" / "valid_pbmc.h5ad"
SCORES = ("pearson_delta_top100", "degs_robust", "discrimination", "edistance")


def run_arm(args: argparse.Namespace, one_program: bool) -> tuple[float, pd.DataFrame]:
    """(wall seconds, metrics) of one arm, in its own process."""
    workdir = Path(args.workdir) / ("one_program" if one_program else "loop")
    command = [sys.executable, str(ROOT / "experiments" / "ood_benchmark.py"),
               "--data", args.data, "--models", args.model, "--epochs", str(args.epochs),
               "--seeds", args.seeds, "--checkpoint_every", "0", "--figures=false",
               "--workdir", str(workdir), "--overwrite", f"--one_program={one_program}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, pd.read_csv(workdir / "metrics.csv")


def training_flops(args: argparse.Namespace, metrics: pd.DataFrame) -> float:
    """XLA's FLOPs of the steps the contexts' fits took (a model on plain cell tables)."""
    family = get_model(args.model)
    config = ood.OODConfig(data=args.data, models=(args.model,), epochs=args.epochs)
    adata = ood.load_data(config)
    encoding = ConditionEncoding.from_adata(adata, config.spec)
    model_config, train_config = family.configured(FitSettings(epochs=args.epochs))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    total = 0.0
    for context, rows in metrics[metrics["model"] == args.model].groupby("context"):
        pool = ood.held_out_split(adata, config, str(context)).train
        val = stratified_validation_mask(pool, config.spec, train_config.validation_fraction, 0)
        codes, contexts = encoding.codes(pool, config.spec), context_codes(pool, config.spec)
        train = batch_of(pool[~val], codes[~val], contexts[~val])
        validation = batch_of(pool[val], codes[val], contexts[val])
        trainer = Trainer(family.build(model_config, TrainingPool(pool, config.spec,
                                                                   encoding).task()),
                          train_config)
        state = trainer.init(seeds, train)
        total += trainer.cost_per_epoch(state, train, validation) * rows["epochs_run"].iloc[0]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(KANG) if KANG.is_file() else "synthetic")
    parser.add_argument("--model", default="mtae")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="1,2,19193")
    parser.add_argument("--workdir", default="runs/loo_speed")
    parser.add_argument("--out", default=None, help="also write the report here (markdown)")
    args = parser.parse_args()
    if get_model(args.model).pairing != "none":
        parser.error("FLOPs are counted for models trained on plain cell tables "
                     "(pairing 'none'), e.g. mtae, mtvae, mtae_adv, scgen")
    peak = matmul_peak()
    loop_wall, loop = run_arm(args, one_program=False)
    one_wall, one = run_arm(args, one_program=True)
    flops = training_flops(args, loop)
    learned = lambda t: t[t["model"] == args.model]  # noqa: E731
    train_seconds = {name: learned(t).groupby("context")["train_seconds"].first().sum()
                     for name, t in (("loop", loop), ("one", one))}
    keys = ["context", "seed"]
    a, b = (learned(t).sort_values(keys).reset_index(drop=True) for t in (loop, one))
    gaps = {s: float(np.nanmax(np.abs(a[s] - b[s]))) for s in SCORES}
    same_epochs = int((a["best_epoch"] == b["best_epoch"]).sum())
    rate = lambda s: f"{flops / s / 1e9:.1f} ({flops / s / 1e9 / peak:.0%})"  # noqa: E731
    contexts = a["context"].nunique()
    report = "\n".join([
        f"# Leave-one-out table: one program against the per-context loop ({args.model})",
        "",
        f"Data `{args.data}`, {contexts} held-out contexts x seeds {args.seeds}, "
        f"{args.epochs} epochs, `default` configuration. Matmul peak in this run: "
        f"{peak:.0f} GFLOP/s. Training: {flops / 1e9:.0f} GFLOP (XLA's count of the steps "
        "taken).",
        "",
        "| arm | table wall s | training s | training GFLOP/s (of peak) |",
        "|---|---|---|---|",
        f"| per-context loop | {loop_wall:.1f} | {train_seconds['loop']:.1f} | "
        f"{rate(train_seconds['loop'])} |",
        f"| one program | {one_wall:.1f} | {train_seconds['one']:.1f} | "
        f"{rate(train_seconds['one'])} |",
        "",
        f"One program / loop: {one_wall / loop_wall:.2f}x the table's wall time, "
        f"{train_seconds['one'] / train_seconds['loop']:.2f}x its training time.",
        "",
        f"How close (the {len(a)} rows of {args.model}): best epoch equal in {same_epochs} / "
        f"{len(a)}; largest absolute difference "
        + ", ".join(f"{s} {g:.2g}" for s, g in gaps.items()) + ".",
        "",
        f"Command: `python benchmarks/loo_speed.py --data {args.data} --model {args.model} "
        f"--epochs {args.epochs} --seeds {args.seeds}`",
    ])
    print(report)
    if args.out:
        write_text(Path(args.out), report + "\n")


if __name__ == "__main__":
    main()
