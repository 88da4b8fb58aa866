"""Launcher of the signature-exposure study (flags -> `perturbjax.studies.signatures.run`).

Semi-synthetic data from real parts in ../shared/data (CellBench cells, Nik-Zainal exposure
distributions, COSMIC v3.4 spectra; about 18 minutes on 2 CPU cores):
  python experiments/signatures.py --workdir runs/signatures
Your own data in the original code's form (counts genes x cells; exposures cells x signatures):
  python experiments/signatures.py --expression counts.csv --exposures exposures.csv \
      --workdir runs/signatures_mine
"""

from __future__ import annotations

import logging

from absl import app, flags

from perturbjax.cli import run_launcher
from perturbjax.data import shared_data_dir
from perturbjax.data.exposures import load_expression_exposures
from perturbjax.data.synthetic_exposures import ExposureSimConfig, make_exposure_data
from perturbjax.studies.signatures import EXPERIMENTS, SignatureStudyConfig, run

FLAGS = flags.FLAGS
flags.DEFINE_string("expression", None, "Counts table, genes x cells (CSV/TSV, IDs first).")
flags.DEFINE_string("exposures", None, "Exposure table, cells x signatures (IDs first).")
flags.DEFINE_string("data_dir", None, "Real parts of the semi-synthetic data "
                    "(default: $PERTURBJAX_DATA or ../shared/data).")
flags.DEFINE_integer("n_cells", 600, "Cells of the semi-synthetic data.")
flags.DEFINE_list("experiments", list(EXPERIMENTS), "Experiments to run.")
flags.DEFINE_integer("n_genes", 2000, "Most variable genes of the training cells kept.")
flags.DEFINE_integer("cv", 10, "Folds of the internal cross-validation.")
flags.DEFINE_integer("lasso_alphas", 100, "Length of the multi-task lasso's alpha grid.")
flags.DEFINE_integer("bootstrap", 1000, "Resamples of the test cells for R^2 intervals.")
flags.DEFINE_integer("stability", 10, "Bootstrap refits for the top genes' stability.")
flags.DEFINE_integer("seed", 0, "Seed of the data, the splits and the resampling.")
flags.DEFINE_string("workdir", "runs/signatures", "Output folder.")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("perturbjax").setLevel(logging.INFO)
    config = SignatureStudyConfig(
        experiments=tuple(FLAGS.experiments), n_genes=FLAGS.n_genes, cv=FLAGS.cv,
        lasso_alphas=FLAGS.lasso_alphas, bootstrap=FLAGS.bootstrap,
        stability=FLAGS.stability, seed=FLAGS.seed)  # checked before the data loads
    if (FLAGS.expression is None) != (FLAGS.exposures is None):
        raise app.UsageError("--expression and --exposures go together")
    if FLAGS.expression:
        adata = load_expression_exposures(FLAGS.expression, FLAGS.exposures)
    else:
        data_dir = FLAGS.data_dir or shared_data_dir()
        if data_dir is None:
            raise app.UsageError("no real data folder: pass --data_dir or set PERTURBJAX_DATA")
        adata = make_exposure_data(data_dir, ExposureSimConfig(n_cells=FLAGS.n_cells,
                                                               seed=FLAGS.seed))
    results = run(adata, config, FLAGS.workdir)
    print(results.summary)
    print(f"outputs in {FLAGS.workdir}: metrics.csv, genes.csv, stability.csv, summary.md, "
          "figures/")


if __name__ == "__main__":
    run_launcher(main)
