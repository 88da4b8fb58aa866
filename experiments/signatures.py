"""Launcher of the signature-exposure study (flags -> `perturbjax.studies.signatures.run`).

Semi-synthetic data from real parts in ../shared/data (CellBench cells, Nik-Zainal exposure
distributions, COSMIC v3.4 spectra; about 18 minutes on 2 CPU cores):
  python experiments/signatures.py --workdir runs/signatures
Your own data in the original study's form (counts genes x cells; exposures cells x
signatures):
  python experiments/signatures.py --expression counts.csv --exposures exposures.csv \
      --workdir runs/signatures_mine
"""

from __future__ import annotations

from absl import flags

from perturbjax.cli import config_from_flags, define_flags, run_launcher, show_progress
from perturbjax.studies.signatures import SignatureStudyConfig, run

SETTINGS = ("expression", "exposures", "data_dir", "n_cells", "experiments", "n_genes", "cv",
            "lasso_alphas", "bootstrap", "stability", "seed")
define_flags(SignatureStudyConfig, {
    "expression": "Counts table, genes x cells (CSV/TSV, IDs first).",
    "exposures": "Exposure table, cells x signatures (IDs first).",
    "data_dir": "Real parts of the semi-synthetic data (default: $PERTURBJAX_DATA or "
                "../shared/data).",
    "n_cells": "Cells of the semi-synthetic data.",
    "experiments": "Experiments to run.",
    "n_genes": "Most variable genes of the training cells kept.",
    "cv": "Folds of the internal cross-validation.",
    "lasso_alphas": "Length of the multi-task lasso's alpha grid.",
    "bootstrap": "Resamples of the test cells for R^2 intervals.",
    "stability": "Bootstrap refits for the top genes' stability.",
    "seed": "Seed of the data, the splits and the resampling.",
}, include=SETTINGS)
flags.DEFINE_string("workdir", "runs/signatures", "Output folder.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    show_progress(FLAGS.progress)
    config = config_from_flags(SignatureStudyConfig, include=SETTINGS)  # checked at once
    results = run(config, FLAGS.workdir)
    print(results.summary)
    print(f"outputs in {FLAGS.workdir}: metrics.csv, genes.csv, stability.csv, summary.md, "
          "figures/")


if __name__ == "__main__":
    run_launcher(main)
