"""Our scGen against the published `scgen` package on Kang: metrics and speed, same run.

Both train the published network (encoder 2 x 800 -> Gaussian latent 100, decoder 100 -> 800
-> 800 -> genes, dropout 0.2; docs/ports.md), batch 32, Adam 1e-3 (eps 0.01, L2 1e-6), on the
same training pool (Kang `valid_pbmc.h5ad` without the held-out type's stimulated cells, 90%
of it for training, 10% for validation), and predict the held-out type's stimulated cells with
the balanced latent delta. The peer runs one seed after another in its own interpreter
(`--peer_python`, an environment made from `benchmarks/requirements-peer-scgen.txt`: the
package pins versions of anndata and scvi-tools that conflict with ours); ours trains the
seeds as one vmapped program. Both are scored by `perturbjax.metrics.evaluate_prediction`
against the same cells.

Protocols: `fixed` trains every epoch (no early stopping); `early_stopping` is each package's
published default (patience 25 epochs; the peer watches scvi-tools' `elbo_validation`, ours
its trained validation loss), and records the epochs each side ran.

Work rate: XLA's count of one epoch's floating-point operations (one seed) is the work of
either implementation (same layers, same batches); GFLOP/s = work / seconds per epoch, against
a float32 matmul peak measured in the same invocation.

Resumable: every finished unit (our seeds of one held-out type, or one peer seed) is appended
to `<results>/rows.csv` at once, and a rerun of the same command skips what is there.

  python benchmarks/peer_scgen.py --peer_python /path/to/peer-venv/bin/python \
      [--held_out CD4T,B] [--epochs 100] [--protocol fixed] [--results results/peer_scgen]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from peak import matmul_peak

from perturbjax.data import KANG_SPEC, load_kang, shared_data_dir
from perturbjax.data.splits import HoldOut, hold_out, stratified_validation_mask
from perturbjax.metrics import HeldOutReference, evaluate_prediction
from perturbjax.models import scgen
from perturbjax.models.fitting import (
    ConditionEncoding,
    Task,
    TrainingPool,
    batch_of,
    fit_on_anndata,
)
from perturbjax.train import TrainConfig, Trainer

SEEDS = (1, 2, 19193)
METRICS = ["degs", "r2_all", "r2_top20", "r2_top100", "edistance", "euclidean"]
OURS, PEER = "perturbjax scGen", "scgen (PyTorch)"
PROTOCOLS = ("fixed", "early_stopping")
KEY = ["implementation", "held_out", "protocol", "max_epochs", "seed"]


def _train_config(epochs: int, protocol: str) -> TrainConfig:
    """The published schedule, to `epochs`, with or without its early stopping."""
    published = scgen.PUBLISHED[1]
    patience = published.patience if protocol == "early_stopping" else None
    return dataclasses.replace(published, epochs=epochs, patience=patience)


def _work_per_epoch(objective: scgen.ScGenObjective, train_config: TrainConfig,
                    split: HoldOut, encoding: ConditionEncoding) -> float:
    """XLA's FLOPs of one seed's epoch on the training pool (validation split excluded)."""
    val = stratified_validation_mask(split.train, KANG_SPEC, train_config.validation_fraction,
                                     0)
    codes = encoding.codes(split.train, KANG_SPEC)
    train = batch_of(split.train[~val], codes[~val])
    trainer = Trainer(objective, train_config)
    return trainer.cost_per_epoch(trainer.init([SEEDS[0]], train), train,
                                  batch_of(split.train[val], codes[val]))


def _append(path: Path, rows: list[dict]) -> None:
    """Add `rows` to the CSV at `path`, rewriting it whole through a temporary file so that an
    interrupted write leaves the previous table intact."""
    table = pd.DataFrame(rows)
    if path.is_file():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    partial = path.with_suffix(".partial")
    table.to_csv(partial, index=False)
    os.replace(partial, path)


def _done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    return set(pd.read_csv(path)[KEY].astype(str).itertuples(index=False, name=None))


def _peer_run(peer_python: str, train_path: Path, held_out: str, epochs: int, protocol: str,
              seed: int, threads: int, out: Path) -> tuple[np.ndarray, dict]:
    command = [peer_python, str(Path(__file__).with_name("scgen_peer_run.py")),
               "--train", str(train_path), "--held_out", held_out, "--epochs", str(epochs),
               "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
    if protocol == "early_stopping":
        command.append("--early_stopping")
    subprocess.run(command, check=True)
    return np.load(str(out) + ".npy"), json.loads(Path(str(out) + ".json").read_text())


def run_held_out(args: argparse.Namespace, adata, held_out: str, rows_path: Path,
                 peak: float) -> None:
    """Every missing unit of one held-out type: our seeds, then each peer seed."""
    done = _done(rows_path)

    def missing(implementation: str, seed: int) -> bool:
        return (implementation, held_out, args.protocol, str(args.epochs), str(seed)) not in done

    split = hold_out(adata, KANG_SPEC, held_out)
    encoding = ConditionEncoding.from_adata(adata, KANG_SPEC)
    model_config = scgen.PUBLISHED[0]
    train_config = _train_config(args.epochs, args.protocol)
    objective = scgen.build(model_config, Task.of(adata.n_vars, encoding.labels, encoding.control))
    work = _work_per_epoch(objective, train_config, split, encoding)
    reference = HeldOutReference.build(split.control.X, split.truth.X, split.control.var_names)
    common = {"held_out": held_out, "protocol": args.protocol, "max_epochs": args.epochs,
              "n_train_cells": split.train.n_obs, "gflop_per_epoch": work / 1e9,
              "matmul_peak_gflops": peak, "devices": str(jax.devices())}

    if any(missing(OURS, seed) for seed in SEEDS):
        start = time.perf_counter()
        result = fit_on_anndata(objective, train_config, split.train, KANG_SPEC, encoding, SEEDS)
        seconds = time.perf_counter() - start
        pool = TrainingPool(split.train, KANG_SPEC, encoding)
        predictions = scgen.predict(objective, result, pool, split.control, "stimulated")
        _append(rows_path, [
            {"implementation": OURS, "seed": seed, **common, "epochs_run": result.epochs_run,
             "train_seconds_all_seeds": seconds,
             **evaluate_prediction(reference, prediction, seed=seed)}
            for seed, prediction in zip(SEEDS, predictions, strict=True)])
        print(f"{OURS} {held_out}: {len(SEEDS)} seeds in {seconds:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        train_path = Path(tmp) / "train.h5ad"
        for seed in SEEDS:
            if not missing(PEER, seed):
                continue
            if not train_path.is_file():
                split.train.write_h5ad(train_path)
            prediction, info = _peer_run(args.peer_python, train_path, held_out, args.epochs,
                                         args.protocol, seed, args.threads,
                                         Path(tmp) / f"peer_{seed}")
            _append(rows_path, [
                {"implementation": PEER, "seed": seed, **common,
                 "epochs_run": info["epochs_run"], "train_seconds": info["train_seconds"],
                 **evaluate_prediction(reference, prediction, seed=seed)}])
            print(f"{PEER} {held_out} seed {seed}: {info['train_seconds']:.0f} s", flush=True)


def report(rows_path: Path, protocol: str, epochs: int) -> str:
    """Markdown: per-seed metrics, mean [min, max] over seeds, and the speed table."""
    table = pd.read_csv(rows_path)
    table = table[(table["protocol"] == protocol) & (table["max_epochs"] == epochs)]
    lines = [f"Kang valid, protocol `{protocol}`, at most {epochs} epochs, batch 32, seeds "
             f"{', '.join(map(str, SEEDS))}", "",
             "| held out | implementation | seed | epochs run | " + " | ".join(METRICS) + " |",
             "|---|---|---|---|" + "---|" * len(METRICS)]
    for row in table.sort_values(["held_out", "implementation", "seed"]).itertuples():
        lines.append(f"| {row.held_out} | {row.implementation} | {row.seed} | "
                     f"{row.epochs_run} | "
                     + " | ".join(f"{getattr(row, m):.3f}" for m in METRICS) + " |")
    lines += ["", "mean [min, max] over seeds:", ""]
    for (held_out, implementation), group in table.groupby(["held_out", "implementation"]):
        lines.append(f"- {held_out}, {implementation}: " + ", ".join(
            f"{m} {group[m].mean():.3f} [{group[m].min():.3f}, {group[m].max():.3f}]"
            for m in METRICS))
    lines += ["", "| held out | implementation | wall s (3 seeds, training) | s / epoch / seed | "
              "GFLOP/s | % of matmul peak |", "|---|---|---|---|---|---|"]
    for (held_out, implementation), group in table.groupby(["held_out", "implementation"]):
        if implementation == OURS:
            seconds = float(group["train_seconds_all_seeds"].iloc[0])
            epoch_seeds = float(group["epochs_run"].iloc[0]) * len(group)
        else:
            seconds = float(group["train_seconds"].sum())
            epoch_seeds = float(group["epochs_run"].sum())
        rate = float(group["gflop_per_epoch"].iloc[0]) * epoch_seeds / seconds
        peak = float(group["matmul_peak_gflops"].iloc[0])
        lines.append(f"| {held_out} | {implementation} | {seconds:.0f} | "
                     f"{seconds / epoch_seeds:.2f} | {rate:.1f} | {100 * rate / peak:.0f}% |")
    for held_out, group in table.groupby("held_out"):
        ours = group[group["implementation"] == OURS]
        peer = group[group["implementation"] == PEER]
        if len(ours) and len(peer) == len(SEEDS):
            ratio = float(ours["train_seconds_all_seeds"].iloc[0]) / peer["train_seconds"].sum()
            lines.append(f"\n{held_out}: ours / peer wall time = {ratio:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer_python", required=True,
                        help="python of an environment with the published scgen package")
    parser.add_argument("--held_out", default="CD4T,B", help="comma-separated cell types")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="fixed")
    parser.add_argument("--threads", type=int, default=2, help="the peer's torch threads")
    parser.add_argument("--results", default="results/peer_scgen",
                        help="folder of rows.csv (resumed) and the report")
    args = parser.parse_args()
    root = shared_data_dir()
    if not root or not (root / "kang" / "valid_pbmc.h5ad").is_file():
        sys.exit("the Kang files are needed: set PERTURBJAX_DATA or place ../shared/data/kang")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    rows_path = results / "rows.csv"
    adata = load_kang(root / "kang", splits=("valid",))
    peak = matmul_peak()
    for held_out in args.held_out.split(","):
        run_held_out(args, adata, held_out, rows_path, peak)
    text = report(rows_path, args.protocol, args.epochs)
    (results / f"report_{args.protocol}_{args.epochs}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
