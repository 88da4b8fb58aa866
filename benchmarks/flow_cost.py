"""What one Kang type costs: MTFlow (3 seeds, inner-context selection included) against CellFlow
at its converged budget (3 seeds), on the same training pool, one after the other in the same
run, so the ratio compares them on the same machine under the same load.

  python benchmarks/flow_cost.py --peer_python /path/to/cellflow-venv/bin/python \
      [--held_out B] [--iterations 8000] [--out results/flow_cost]

Writes `cost.csv` and `README.md` (wall seconds of each, and their ratio) into `--out`. Run it
with the other cores idle: both programs use what they find.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from peer_cellflow import CellFlowPeer, kang_config

from perturbjax.data.splits import is_control
from perturbjax.models import RECOMMENDED, get_model
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.studies import ood
from perturbjax.studies.report import markdown_table

SEEDS = (1, 2, 19193)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer_python", required=True)
    parser.add_argument("--held_out", default="B")
    parser.add_argument("--iterations", type=int, default=8000)
    parser.add_argument("--out", default="results/flow_cost")
    args = parser.parse_args()
    config = kang_config("the cost")
    adata = ood.load_data(config)
    split = ood.held_out_split(adata, config, args.held_out)
    spec = config.spec
    pool = TrainingPool(split.train, spec, ConditionEncoding.from_adata(split.train, spec))
    conditions = sorted(set(split.train.obs[spec.condition_key].astype(str))
                        - {str(spec.control_value)})
    control = split.train[(split.train.obs[spec.context_key].astype(str) == args.held_out)
                          .to_numpy() & is_control(split.train, spec)].copy()
    rows = []
    started = time.perf_counter()
    get_model(RECOMMENDED).fit(pool, SEEDS, ood.fit_settings(config))
    rows.append({"model": RECOMMENDED, "budget": "default configuration",
                 "seconds": time.perf_counter() - started})
    started = time.perf_counter()
    CellFlowPeer(args.peer_python, args.iterations)(split.train, control, spec, conditions,
                                                    SEEDS)
    rows.append({"model": "cellflow", "budget": f"{args.iterations} iterations",
                 "seconds": time.perf_counter() - started})
    table = pd.DataFrame(rows)
    table["ratio_to_cellflow"] = table["seconds"] / table["seconds"].iloc[-1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "cost.csv", index=False)
    (out / "README.md").write_text(
        f"# Cost of one Kang type ({args.held_out}), {len(SEEDS)} seeds each, same run\n\n"
        f"```\n{' '.join(sys.argv)}\n```\n\n" + markdown_table(table.set_index("model"))
        + "\n")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
