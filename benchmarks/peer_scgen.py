"""Our scGen against the published `scgen` package on Kang: metrics and speed, same run.

Both train the same network (encoder 2 x 800, latent 100, decoder 800 -> genes with scvi-tools'
output block; dropout 0.2), batch 32, Adam 1e-3 (eps 0.01, weight decay 1e-6), the same number
of epochs without early stopping, on the same training pool (Kang without the held-out type's
stimulated cells), and predict the held-out type's stimulated cells with the balanced latent
delta. The peer runs one seed after another in its own interpreter (`--peer_python`, an
environment made from `benchmarks/requirements-peer-scgen.txt`: the package pins versions of
anndata and scvi-tools that conflict with ours); ours trains the three seeds as one vmapped
program. Both are scored by `perturbjax.metrics.evaluate_prediction` against the same cells.

Work rate: XLA's count of one epoch's floating-point operations (one seed) is the work of
either implementation (same layers, same batches); GFLOP/s = work / seconds per epoch, against
a float32 matmul peak measured in this run.

  python benchmarks/peer_scgen.py --peer_python /path/to/peer-venv/bin/python \
      [--held_out CD4T] [--epochs 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from perturbjax.data.splits import hold_out, stratified_validation_mask
from perturbjax.metrics import HeldOutReference, evaluate_prediction
from perturbjax.models import scgen
from perturbjax.models.fitting import ConditionEncoding, batch_of, fit_on_anndata
from perturbjax.train import Trainer

SEEDS = (1, 2, 19193)
METRICS = ["degs", "r2_all", "r2_top20", "r2_top100", "edistance", "euclidean"]


def _work_per_epoch(objective, train_config, split, encoding) -> float:
    """XLA's FLOPs of one seed's epoch on the training pool (validation split excluded)."""
    val = stratified_validation_mask(split.train, KANG_SPEC, train_config.validation_fraction,
                                     0)
    codes = encoding.codes(split.train, KANG_SPEC)
    train = batch_of(split.train[~val], codes[~val])
    trainer = Trainer(objective, train_config)
    return trainer.cost_per_epoch(trainer.init([SEEDS[0]], train), train,
                                  batch_of(split.train[val], codes[val]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer_python", required=True,
                        help="python of an environment with the published scgen package")
    parser.add_argument("--held_out", default="CD4T")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="the peer's torch threads")
    args = parser.parse_args()
    root = shared_data_dir()
    if not root or not (root / "kang" / "valid_pbmc.h5ad").is_file():
        sys.exit("the Kang files are needed: set PERTURBJAX_DATA or place ../shared/data/kang")
    adata = load_kang(root / "kang", splits=("valid",))
    split = hold_out(adata, KANG_SPEC, args.held_out)
    encoding = ConditionEncoding.from_adata(adata, KANG_SPEC)
    model_config, published = scgen.PUBLISHED
    train_config = dataclasses.replace(published, epochs=args.epochs, patience=None)
    objective = scgen.build(model_config, adata.n_vars, encoding.labels, encoding.control)
    peak = matmul_peak()
    work = _work_per_epoch(objective, train_config, split, encoding)
    reference = HeldOutReference.build(split.control.X, split.truth.X, split.control.var_names)

    start = time.perf_counter()
    result = fit_on_anndata(objective, train_config, split.train, KANG_SPEC, encoding, SEEDS)
    ours_seconds = time.perf_counter() - start
    ours = scgen.predict(objective, result, split, KANG_SPEC, encoding, "stimulated")

    peer, peer_seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.h5ad"
        split.train.write_h5ad(path)
        for seed in SEEDS:
            out = str(Path(tmp) / f"peer_{seed}")
            command = [args.peer_python, str(Path(__file__).with_name("scgen_peer_run.py")),
                       "--train", str(path), "--held_out", args.held_out, "--epochs",
                       str(args.epochs), "--seed", str(seed), "--threads", str(args.threads),
                       "--out", out]
            subprocess.run(command, check=True)
            peer.append(np.load(out + ".npy"))
            peer_seconds.append(json.loads(Path(out + ".json").read_text())["train_seconds"])

    rows = [{"model": name, "seed": seed, **evaluate_prediction(reference, pred, seed=seed)}
            for name, predictions in (("perturbjax scGen", ours), ("scgen (PyTorch)", peer))
            for seed, pred in zip(SEEDS, predictions, strict=True)]
    table = pd.DataFrame(rows)
    print(f"Kang valid, held out {args.held_out}: {split.train.n_obs} training cells x "
          f"{adata.n_vars} genes; {args.epochs} epochs, batch 32; devices {jax.devices()}")
    print(f"matmul peak (float32 2048^3 jnp.dot): {peak:.1f} GFLOP/s; work of one seed's "
          f"epoch (XLA count): {work / 1e9:.1f} GFLOP\n")
    print("| model | seed | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for row in rows:
        print(f"| {row['model']} | {row['seed']} | "
              + " | ".join(f"{row[m]:.3f}" for m in METRICS) + " |")
    spread = table.groupby("model")[METRICS].agg(["mean", "min", "max"])
    print("\nmean [min, max] over seeds:")
    for model, stats in spread.iterrows():
        print(f"- {model}: " + ", ".join(
            f"{m} {stats[(m, 'mean')]:.3f} [{stats[(m, 'min')]:.3f}, {stats[(m, 'max')]:.3f}]"
            for m in METRICS))
    peer_total = float(np.sum(peer_seconds))
    print("\n| implementation | seeds | wall s (training) | s / epoch / seed | GFLOP/s | "
          "% of peak |")
    print("|---|---|---|---|---|---|")
    for name, seconds in (("perturbjax, 3 seeds vmapped (incl. compile)", ours_seconds),
                          ("scgen, 3 sequential runs", peer_total)):
        per_epoch_seed = seconds / args.epochs / len(SEEDS)
        rate = work / per_epoch_seed / 1e9
        print(f"| {name} | {len(SEEDS)} | {seconds:.1f} | {per_epoch_seed:.3f} | {rate:.1f} | "
              f"{100 * rate / peak:.0f}% |")
    print(f"\nratio (ours / peer wall time): {ours_seconds / peer_total:.2f}")


if __name__ == "__main__":
    main()
