"""Speed of the evaluation, in one run: our distances against pertpy's, and the scoring of a
held-out context against the training of one model on it.

1. Distances between two groups of n cells in d = 50 dimensions (a Gaussian cloud and a
   shifted, rescaled copy), n = 500, 2,000, 5,000: `perturbjax.metrics.distances` (jitted,
   float32 terms summed in float64; timed after a compiling call) against pertpy's
   `Distance` in its own environment (`benchmarks/peer_metrics.py speed`, float64 inputs,
   timed after a warm-up call). Best of `--repeats` wall times each; the values must agree
   to 1e-6 relative (pertpy 1.0.3's E-distance once its self-pairs are taken out).
2. One Kang cell type held out (`--context`), the OOD study with one learned model
   (`--model`, its default configuration, 3 seeds) and the floor references: the study's
   own timers give the seconds of training and of scoring (references, the replicate
   ceiling of every metric over 10 splits, every prediction's metrics, scanpy's tests
   included).

  python benchmarks/metric_speed.py --peer_python /path/to/metrics-peer-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perturbjax.data import shared_data_dir
from perturbjax.files import write_text
from perturbjax.metrics.distances import DISTANCES
from perturbjax.studies import ood
from perturbjax.studies.report import markdown_table

SCRIPT = Path(__file__).resolve().parent / "peer_metrics.py"


def groups(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.3, 50)
    x = rng.normal(size=(n, 50)) * scales
    y = rng.normal(size=(n, 50)) * scales * 1.1 + rng.normal(0, 0.5, 50)
    return x.astype(np.float32), y.astype(np.float32)


def ours(x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, distance in DISTANCES.items():
        value = float(distance(x, y))  # compiles at this size
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            float(distance(x, y))
            times.append(time.perf_counter() - started)
        out[name] = {"seconds": min(times), "value": value}
    return out


def distance_table(sizes: list[int], repeats: int, peer_python: str) -> pd.DataFrame:
    data = {"sizes": np.array(sizes), "repeats": np.array(repeats)}
    for n in sizes:
        x, y = groups(n)
        data[f"x_{n}"], data[f"y_{n}"] = x.astype(np.float64), y.astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        np.savez(Path(folder) / "input.npz", **data)
        subprocess.run([peer_python, str(SCRIPT), "speed", str(Path(folder) / "input.npz"),
                        str(Path(folder) / "peer.json")], check=True)
        peer = json.loads((Path(folder) / "peer.json").read_text())
    rows = []
    for n in sizes:
        mine = ours(*groups(n), repeats)
        for name, result in mine.items():
            peer_result = peer[str(n)][name]
            theirs = peer_result.get("value_without_self_pairs", peer_result["value"])
            rows.append({"n per group": n, "distance": name,
                         "ours (s)": result["seconds"],
                         "pertpy (s)": peer[str(n)][name]["seconds"],
                         "speed-up": peer[str(n)][name]["seconds"] / result["seconds"],
                         "relative difference": abs(result["value"] - theirs) / abs(theirs)})
    print(f"pertpy {peer['versions']['pertpy']}")
    return pd.DataFrame(rows)


def scoring_against_training(data: Path, context: str, model: str,
                             epochs: int | None) -> pd.DataFrame:
    config = ood.OODConfig(data=str(data), held_out=(context,), models=(model,),
                           epochs=epochs, checkpoint_every=0, figures=False)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        metrics = ood.run(config, workdir).metrics
        wall = time.perf_counter() - started
    trained = metrics[metrics["model"] == model]
    cells = metrics.drop_duplicates(["model", "context"])  # every row of a cell: its time
    train = float(trained["train_seconds"].iloc[0])
    score = float(cells["scoring_seconds"].sum() + cells["reference_seconds"].iloc[0])
    return pd.DataFrame([{"context": context, "model": f"{model} ({len(trained)} seeds)",
                          "training (s)": train, "scoring (s)": score,
                          "scoring / training": score / train, "whole run (s)": wall,
                          "rows scored": len(metrics)}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer_python", required=True,
                        help="interpreter of the environment of requirements-peer-metrics.txt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context", default="CD4T")
    parser.add_argument("--model", default="mtae")
    parser.add_argument("--epochs", type=int, default=None,
                        help="shorter training, for a smoke run only (the ratio then means "
                             "nothing): default, the configuration's own schedule")
    parser.add_argument("--out", default="results/metric_speed")
    args = parser.parse_args()
    data = shared_data_dir()
    kang = data / "kang" / "valid_pbmc.h5ad" if data else None
    if kang is None or not kang.is_file():
        sys.exit("metric_speed.py: the Kang file ../shared/data/kang/valid_pbmc.h5ad is absent")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    distances = distance_table(args.sizes, args.repeats, args.peer_python)
    distances.to_csv(out / "distances.csv", index=False)
    tables = [markdown_table(distances.set_index(["n per group", "distance"]), "{:.3g}")]
    print(tables[0])
    scoring = scoring_against_training(kang, args.context, args.model, args.epochs)
    scoring.to_csv(out / "scoring.csv", index=False)
    tables.append(markdown_table(scoring.set_index("context"), "{:.3g}"))
    print(tables[1])
    write_text(out / "report.md", "\n\n".join(["# Speed of the evaluation",
                                                 f"`{' '.join(sys.argv)}`", *tables]) + "\n")


if __name__ == "__main__":
    main()
