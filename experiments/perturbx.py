"""Launcher of the PerturbX study (flags -> `perturbjax.studies.perturbx.run`).

The McFarland-like semi-synthetic set around 24 real GDSC lines (shared data), 6 x 3 members
(about 4.5 minutes on 2 CPU cores):
  python experiments/perturbx.py --workdir runs/perturbx
The real MIX-seq release (one 10x folder per experiment; TP53 status from the shared GDSC
mutation table, or --status_csv with columns cell_line,tp53_wt; the release is not available
here, so its cost is not measured; the tests run the command on files in its layout):
  python experiments/perturbx.py --mixseq_dir McFarland2020 \
      --experiments DMSO_24hr_expt1,Idasanutlin_24hr_expt1 --n_top_genes 5000
The download-free toy set (about 25 seconds):
  python experiments/perturbx.py --toy --epochs 60 --workdir runs/px_toy
"""

from __future__ import annotations

from absl import flags

from perturbjax.cli import config_from_flags, define_flags, run_launcher, show_progress
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig
from perturbjax.models.perturbx import POOLINGS, TARGETS, PerturbXConfig
from perturbjax.studies.perturbx import DEFAULT_FOLDS, FoldCountError, PerturbXStudyConfig, run

STUDY = ("toy", "data_dir", "mixseq_dir", "experiments", "status_csv", "hvgs", "n_folds",
         "fold_seed", "seeds", "epochs", "batch_size", "learning_rate", "shapley_permutations")
STUDY_NAMES = {"hvgs": "n_top_genes", "n_folds": "folds", "fold_seed": "seed"}
MODEL = ("n_select", "pooling", "target", "bag_size")
SIMULATION = ("n_lines", "n_wild_type", "n_genes", "basal_shift", "exclude_lineages")
SIMULATION_NAMES = {"n_lines": "lines", "n_wild_type": "wild_type", "n_genes": "genes"}
define_flags(PerturbXStudyConfig, {
    "toy": "Use the download-free toy data set instead.",
    "data_dir": "Shared data folder with gdsc/ (default: $PERTURBJAX_DATA or ../shared/data).",
    "mixseq_dir": "Folder of MIX-seq experiment folders (real data).",
    "experiments": "MIX-seq experiment folders: the DMSO control and one drug.",
    "status_csv": "CSV with columns cell_line,tp53_wt (real data).",
    "hvgs": "Keep this many highly variable genes (scanpy).",
    "n_folds": "Folds over cell lines, stratified by TP53 status (default: "
               f"{DEFAULT_FOLDS}, or the smaller status class's line count).",
    "fold_seed": "Seed of the simulation and the folds.",
    "seeds": "Seeds; every fold x seed is one member.",
    "epochs": "Epochs (passes over the training lines).",
    "batch_size": "Bags per step.",
    "learning_rate": "Adam learning rate.",
    "shapley_permutations": "Permutations of the Shapley estimate.",
}, include=STUDY, names=STUDY_NAMES)
define_flags(PerturbXConfig, {"n_select": "Genes the concrete selector reads.",
                              "pooling": "Bag pooling.", "target": "Training target.",
                              "bag_size": "Cells per training bag."},
             include=MODEL, choices={"pooling": POOLINGS, "target": TARGETS})
define_flags(MixSeqSimConfig, {
    "n_lines": "Semi-synthetic: cell lines.",
    "n_wild_type": "Semi-synthetic: TP53 wild-type lines among them.",
    "n_genes": "Semi-synthetic: genes simulated.",
    "basal_shift": "Semi-synthetic: tonic programme activity in wild-type lines (log units).",
    "exclude_lineages": "Semi-synthetic: DepMap lineages never drawn (empty: draw from all).",
}, include=SIMULATION, names=SIMULATION_NAMES)
flags.DEFINE_string("workdir", "runs/perturbx", "Output folder.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    show_progress(FLAGS.progress)
    config = config_from_flags(  # checked before the data loads
        PerturbXStudyConfig, include=STUDY, names=STUDY_NAMES,
        model=config_from_flags(PerturbXConfig, include=MODEL),
        simulation=config_from_flags(MixSeqSimConfig, include=SIMULATION,
                                     names=SIMULATION_NAMES))
    try:
        results = run(config, FLAGS.workdir)
    except FoldCountError as error:
        given = "the default" if FLAGS.folds is None else FLAGS.folds
        raise FoldCountError(f"--folds ({given}): {error}") from error
    print(results.summary)


if __name__ == "__main__":
    run_launcher(main)
