"""Launcher of the drug-sensitivity study (flags -> `perturbjax.studies.drug_response.run`).

Shared data (GDSC2 + CellBench in ../shared/data), Camptothecin, the original grid (about 12
minutes on 2 CPU cores):
  python experiments/drug_response.py --workdir runs/drug_response
Official GDSC release files (fitted dose-response table, RMA matrix), any drug:
  python experiments/drug_response.py --response GDSC2_fitted_dose_response.csv \
      --expression Cell_line_RMA_proc_basalExp.txt --drug Cisplatin --gene_filter 1.9,0
The download-free toy set (known answer, about 20 seconds):
  python experiments/drug_response.py --toy --grid small --workdir runs/drug_toy
"""

from __future__ import annotations

from absl import flags

from perturbjax.cli import config_from_flags, define_flags, run_launcher, show_progress
from perturbjax.data.cellbench import ALL_RUNS
from perturbjax.drug.features import ZSCORED_FILTER
from perturbjax.studies.drug_response import FEATURES, GRIDS, MEASURES, DrugStudyConfig, run

SETTINGS = ("toy", "data_dir", "response", "expression", "drug", "measure", "cellbench_runs",
            "lineages", "features", "gene_filter", "grid", "folds", "repeats", "seeds",
            "final_seeds", "permutations", "seed")
define_flags(DrugStudyConfig, {
    "toy": "Use the download-free toy data set instead.",
    "data_dir": "Shared data folder with gdsc/, cellbench/, gene_map/ (default: "
                "$PERTURBJAX_DATA or ../shared/data).",
    "response": "Official GDSC fitted dose-response table (CSV/XLSX).",
    "expression": "Official GDSC RMA expression matrix (TXT).",
    "drug": "GDSC2 drug name.",
    "measure": "Response measure.",
    "cellbench_runs": f"CellBench runs with the single cells (any of {list(ALL_RUNS)}).",
    "lineages": "DepMap sample-info CSV for the lineage reference (default: the shared copy "
                "when present; 'none' skips it).",
    "features": "Feature representation.",
    "gene_filter": "min mean, min log variance of the gene filter (the original code's on log "
                   f"expression: 1.9,0; default {ZSCORED_FILTER} for the z-scored shared "
                   "matrix, none for the toy set).",
    "grid": "Hyper-parameter grid.",
    "folds": "Outer folds over cell lines.",
    "repeats": "Repeats of the outer k-fold.",
    "seeds": "Seeds of every grid run.",
    "final_seeds": "Seeds of the final ensemble.",
    "permutations": "Random gene sets in the DREEP null.",
    "seed": "Seed of the splits and the null.",
}, include=SETTINGS,
    choices={"measure": MEASURES, "features": FEATURES, "grid": sorted(GRIDS)})
flags.DEFINE_string("workdir", "runs/drug_response", "Output folder.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    show_progress(FLAGS.progress)
    results = run(config_from_flags(DrugStudyConfig, include=SETTINGS), FLAGS.workdir)
    print(results.summary)


if __name__ == "__main__":
    run_launcher(main)
