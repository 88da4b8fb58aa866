"""CellFlow's training budget, read off a curve: its training loss and an inner-context score
against iterations, on one Kang type, so its table rows can run at a budget where both
plateau instead of at a guess.

The outer type's perturbed cells are removed as in the benchmark; inside that pool one inner
context (`choose_inner_contexts`: the type with the most cells on its smaller side) loses its
perturbed cells too. CellFlow trains on the rest, one seed, in stages up to each budget
(`cellflow_peer_run.py --budgets`), predicting the inner context's control cells after each
stage; the predictions are scored against that context's real perturbed cells with the
benchmark's raw response metrics. Nothing of the outer type is scored.

  python benchmarks/cellflow_budget.py --peer_python /path/to/cellflow-venv/bin/python \
      [--outer CD4T] [--budgets 500,1000,2000,4000,8000,12000,16000] \
      [--out results/cellflow_budget]

Writes `curve.csv` (budget, seconds, mean loss of the stage's last 500 iterations, scores),
`loss.csv` (the loss per 100 iterations), `curve.png` and `README.md`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from peer_cellflow import kang_config

from perturbjax.data.splits import hold_out_mask, is_control
from perturbjax.metrics.response import ResponseTruth, response_scores
from perturbjax.models.inner_selection import choose_inner_contexts
from perturbjax.studies import ood
from perturbjax.studies.report import markdown_table

RUNNER = Path(__file__).with_name("cellflow_peer_run.py")
SCORES = ("pearson_delta_top100", "degs_robust", "direction_top100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer_python", required=True)
    parser.add_argument("--outer", default="CD4T", help="the outer held-out type")
    parser.add_argument("--budgets", default="500,1000,2000,4000,8000,12000,16000")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--out", default="results/cellflow_budget")
    args = parser.parse_args()
    config = kang_config("the curve")
    adata = ood.load_data(config)
    spec = config.spec
    pool = adata[~hold_out_mask(adata, spec, [args.outer])].copy()
    inner = choose_inner_contexts(pool, spec, 1)[0]
    train = pool[~hold_out_mask(pool, spec, [inner])].copy()
    in_inner = (pool.obs[spec.context_key].astype(str) == inner).to_numpy()
    query = pool[in_inner & is_control(pool, spec)].copy()
    real = pool[in_inner & ~is_control(pool, spec)]
    condition = str(real.obs[spec.condition_key].iloc[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.h5ad" for name in ("train", "control")}
        train.write_h5ad(paths["train"])
        query.write_h5ad(paths["control"])
        npz = Path(folder) / "curve.npz"
        subprocess.run([args.peer_python, str(RUNNER), "--train", str(paths["train"]),
                        "--control", str(paths["control"]), "--out", str(npz),
                        "--condition", condition, "--seeds", args.seed,
                        "--budgets", args.budgets, "--context_key", spec.context_key,
                        "--condition_key", spec.condition_key,
                        "--control_value", str(spec.control_value)], check=True)
        with np.load(npz) as saved:
            predictions, loss = saved["predictions"], saved["loss"]
            budgets, seconds = saved["budgets"], saved["seconds"]
    truth = ResponseTruth.build(np.asarray(query.X), np.asarray(real.X), query.var_names)
    rows = []
    for budget, secs, prediction in zip(budgets, seconds, predictions, strict=True):
        scores = response_scores(truth, prediction)
        rows.append({"budget": int(budget), "seconds": round(float(secs), 1),
                     "loss_last_500": float(loss[max(0, budget - 500):budget].mean()),
                     **{k: scores[k] for k in SCORES}})
    curve = pd.DataFrame(rows)
    curve.to_csv(out / "curve.csv", index=False)
    per_100 = loss[: len(loss) // 100 * 100].reshape(-1, 100).mean(axis=1)
    pd.DataFrame({"iteration": np.arange(1, len(per_100) + 1) * 100,
                  "loss": per_100}).to_csv(out / "loss.csv", index=False)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(np.arange(1, len(per_100) + 1) * 100, per_100)
    axes[0].set(xlabel="iteration", ylabel="training loss (mean per 100)", yscale="log")
    for score in SCORES[:2]:
        axes[1].plot(curve["budget"], curve[score], marker="o", label=score)
    axes[1].set(xlabel="iterations", ylabel=f"inner context {inner}", xscale="log")
    axes[1].legend()
    figure.suptitle(f"CellFlow on Kang without {args.outer} (outer) and {inner} (inner)")
    figure.tight_layout()
    figure.savefig(out / "curve.png", dpi=120)
    (out / "README.md").write_text(
        f"# CellFlow's budget on Kang\n\nOuter type {args.outer} removed; inner context "
        f"{inner} scored (seed {args.seed}).\n\n```\n{' '.join(sys.argv)}\n```\n\n"
        + markdown_table(curve.set_index("budget")) + "\n")
    print(curve.to_string(index=False))


if __name__ == "__main__":
    main()
