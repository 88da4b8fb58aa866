"""Does the interval of `perturbjax.fit(..., calibrate=True)` cover what it says, on cell types
it never saw perturbed? Synthetic data with a known answer and exchangeable types.

The embedded generator draws every cell type from one distribution, so its types are
exchangeable. The first `--train_types` types train the model and calibrate it (one fit more
per type, each without that type's perturbed cells); the other types are new: their perturbed
cells are held out of every fit, their control cells are predicted, and the share of genes whose
real mean response lies in the interval is measured on each. With K calibration types, the
expected share is ceil(level (K+1)) / (K+1) for continuous residuals (at least the level);
the table puts it beside the measured one, and beside the seeds' spread (uncalibrated).

This measurement is not the benchmark's `coverage.csv`: there every context is calibrated by
the other contexts of the same table, and the mean of that coverage over a table's contexts is
ceil(level N) / N by construction (each gene is covered on exactly that many contexts);
only its spread across contexts is informative there.

Nothing here is tuned: every model runs its `default` configuration, the settings below were
fixed before the first run, and the test types take no part in any choice.

  python benchmarks/conformal_coverage.py [--models mtae,scgen] [--results results/conformal]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

import perturbjax
from perturbjax.data import SyntheticConfig, make_perturbation_data
from perturbjax.files import write_csv, write_text
from perturbjax.metrics.conformal import LEVELS, calibration_rank, interval_scores
from perturbjax.models.trained import interval_columns
from perturbjax.studies.report import markdown_table, mean_sd_table

SYNTHETIC = SyntheticConfig(n_types=18, cells_per_group=100)
TRAIN_TYPES = 9  # the fewest that give a finite 90% interval


def coverage_rows(adata, model: str, train_types: int, seeds: tuple[int, ...],
                  epochs: int | None) -> list[dict]:
    """One row per (test type, level): the interval's coverage and width on that type."""
    types = sorted(adata.obs["cell_type"].unique(), key=lambda t: int(t.split("_")[1]))
    test = types[train_types:]
    started = time.perf_counter()
    fitted = perturbjax.fit(adata, model=model, held_out=test, seeds=seeds, epochs=epochs)
    seconds = time.perf_counter() - started
    calibration = len(fitted.calibration["stimulated"])
    rows = []
    for context in test:
        cells = adata[(adata.obs["cell_type"] == context).to_numpy()]
        stimulated = (cells.obs["condition"] == "stimulated").to_numpy()
        control = cells[~stimulated].copy()
        real = np.asarray(cells.X[stimulated]).mean(axis=0) - np.asarray(control.X).mean(axis=0)
        for level in LEVELS:
            var = fitted.predict(control, "stimulated", level=level).var
            half = (var[interval_columns(level)[1]] - var["predicted_response"]).to_numpy()
            spread = var["response_seed_sd_uncalibrated"].to_numpy() * _z(level)
            rows.append({
                "model": model, "context": context, "level": level,
                "calibration_types": calibration,
                "expected": calibration_rank(calibration, level) / (calibration + 1),
                **interval_scores(real, var["predicted_response"].to_numpy(), half),
                **{f"seed_spread_{k}": v for k, v in interval_scores(
                    real, var["predicted_response"].to_numpy(), spread).items()},
                "fit_seconds": seconds})
    return rows


def _z(level: float) -> float:
    from scipy import stats
    return float(stats.norm.ppf(0.5 + level / 2))


def report(table: pd.DataFrame, command: str) -> str:
    """Mean ± sd over the test types, per model and level."""
    shown = table.assign(level=table["level"].map("{:.0%}".format))
    summary = mean_sd_table(shown, ["model", "level"],
                            ["coverage", "expected", "mean_width", "seed_spread_coverage",
                             "seed_spread_mean_width"])
    n_test = table["context"].nunique()
    return "\n\n".join([
        "# Conformal coverage on new synthetic cell types",
        f"`{command}`",
        f"{int(table['calibration_types'].iloc[0])} training types calibrate the interval; "
        f"{n_test} new types (never seen perturbed) measure it. `coverage`: share of genes "
        "whose real mean response lies inside; `expected`: ceil(level (K+1)) / (K+1); "
        "mean ± sd over the new types. The seed spread (d_P ± z sd over seeds) is not "
        "calibrated.",
        markdown_table(summary.reset_index().set_index(["model", "level"])),
        "Fit time per model (s, the model and its calibration fits): "
        + ", ".join(f"{m} {s:.0f}" for m, s in
                    table.groupby("model")["fit_seconds"].first().items()),
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mtae,scgen")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--types", type=int, default=SYNTHETIC.n_types)
    parser.add_argument("--train_types", type=int, default=TRAIN_TYPES)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--results", default="results/conformal")
    args = parser.parse_args()
    adata = make_perturbation_data(dataclasses.replace(SYNTHETIC, n_types=args.types))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    results = Path(args.results)
    rows = []
    for model in args.models.split(","):
        rows += coverage_rows(adata, model, args.train_types, seeds, args.epochs)
        table = pd.DataFrame(rows)
        write_csv(results / "synthetic_coverage.csv", table)
        command = "python benchmarks/conformal_coverage.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if v is not None)
        write_text(results / "synthetic_coverage.md", report(table, command))
        print(report(table, command), flush=True)


if __name__ == "__main__":
    main()
