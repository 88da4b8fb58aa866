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

import logging
from pathlib import Path

import pandas as pd
from absl import app, flags

from perturbjax.cli import parse_seeds, run_launcher
from perturbjax.data import shared_data_dir
from perturbjax.data.gdsc import MUTATIONS_FILE, read_mutation_status
from perturbjax.data.mixseq import load_mixseq, tp53_wild_type
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig, make_mixseq_like, make_toy_mixseq
from perturbjax.models.perturbx import POOLINGS, TARGETS, PerturbXConfig
from perturbjax.studies.perturbx import (
    DEFAULT_FOLDS,
    FoldCountError,
    PerturbXStudyConfig,
    prepare_cells,
    run,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Shared data folder with gdsc/ (default: "
                    "$PERTURBJAX_DATA or ../shared/data).")
flags.DEFINE_string("mixseq_dir", None, "Folder of MIX-seq experiment folders (real data).")
flags.DEFINE_list("experiments", ["DMSO_24hr_expt1", "Idasanutlin_24hr_expt1"],
                  "MIX-seq experiment folders: the DMSO control and one drug.")
flags.DEFINE_string("status_csv", None, "CSV with columns cell_line,tp53_wt (real data).")
flags.DEFINE_bool("toy", False, "Use the download-free toy data set instead.")
flags.DEFINE_integer("lines", 24, "Semi-synthetic: cell lines.")
flags.DEFINE_integer("wild_type", 7, "Semi-synthetic: TP53 wild-type lines among them.")
flags.DEFINE_integer("genes", 2000, "Semi-synthetic: genes simulated.")
flags.DEFINE_float("basal_shift", MixSeqSimConfig.basal_shift,
                   "Semi-synthetic: tonic programme activity in wild-type lines (log units).")
flags.DEFINE_list("exclude_lineages", list(MixSeqSimConfig.exclude_lineages),
                  "Semi-synthetic: DepMap lineages never drawn (empty: draw from all).")
flags.DEFINE_integer("n_top_genes", None, "Keep this many highly variable genes (scanpy).")
flags.DEFINE_enum("pooling", "mean", list(POOLINGS), "Bag pooling.")
flags.DEFINE_enum("target", "bootstrap", list(TARGETS), "Training target.")
flags.DEFINE_integer("n_select", 64, "Genes the concrete selector reads.")
flags.DEFINE_integer("bag_size", 64, "Cells per training bag.")
flags.DEFINE_integer("folds", None, "Folds over cell lines, stratified by TP53 status "
                     f"(default: {DEFAULT_FOLDS}, or the smaller status class's line count).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; every fold x seed is one member.")
flags.DEFINE_integer("epochs", 300, "Epochs (passes over the training lines).")
flags.DEFINE_integer("batch_size", 4, "Bags per step.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("shapley_permutations", 128, "Permutations of the Shapley estimate.")
flags.DEFINE_integer("seed", 0, "Seed of the simulation and the folds.")
flags.DEFINE_string("workdir", "runs/perturbx", "Output folder.")


def _load():
    """(log-normalised cells with obs tp53_wt, programme genes or None)."""
    if FLAGS.toy:
        raw = make_toy_mixseq(seed=FLAGS.seed)
        return prepare_cells(raw, FLAGS.n_top_genes), raw.uns["truth"]["programme"]
    data_dir = FLAGS.data_dir or shared_data_dir()
    if FLAGS.mixseq_dir:
        raw = load_mixseq(FLAGS.mixseq_dir, FLAGS.experiments)
        lines = raw.obs["cell_line"].astype(str)
        if FLAGS.status_csv:
            table = pd.read_csv(FLAGS.status_csv)
            missing = {"cell_line", "tp53_wt"} - set(table.columns)
            if missing:
                raise app.UsageError(f"{FLAGS.status_csv}: missing columns {sorted(missing)}")
            status = table.set_index("cell_line")["tp53_wt"].astype(bool)
        elif data_dir is None:
            raise app.UsageError("TP53 status needs --status_csv or the shared data folder")
        else:
            status = tp53_wild_type(sorted(lines.unique()),
                                    read_mutation_status(Path(data_dir) / MUTATIONS_FILE))
        absent = sorted(set(lines) - set(status.index))
        if absent:
            raise app.UsageError(f"no TP53 status for cell lines {absent[:5]}")
        raw.obs["tp53_wt"] = lines.map(status).astype(bool).to_numpy()
        return prepare_cells(raw, FLAGS.n_top_genes), None
    if data_dir is None:
        raise app.UsageError("no data folder: pass --data_dir, set PERTURBJAX_DATA, or --toy")
    raw = make_mixseq_like(data_dir, MixSeqSimConfig(
        n_lines=FLAGS.lines, n_wild_type=FLAGS.wild_type, n_genes=FLAGS.genes,
        basal_shift=FLAGS.basal_shift, exclude_lineages=tuple(FLAGS.exclude_lineages),
        seed=FLAGS.seed))
    return prepare_cells(raw, FLAGS.n_top_genes), raw.uns["truth"]["programme"]


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("perturbjax").setLevel(logging.INFO)
    config = PerturbXStudyConfig(
        model=PerturbXConfig(n_select=FLAGS.n_select, pooling=FLAGS.pooling,
                             target=FLAGS.target, bag_size=FLAGS.bag_size),
        n_folds=FLAGS.folds, fold_seed=FLAGS.seed, seeds=parse_seeds(FLAGS.seeds, "seeds"),
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        shapley_permutations=FLAGS.shapley_permutations)  # checked before the data loads
    cells, programme = _load()
    try:
        run(cells, config, FLAGS.workdir, programme)
    except FoldCountError as error:
        given = "the default" if FLAGS.folds is None else FLAGS.folds
        raise FoldCountError(f"--folds ({given}): {error}") from error
    print((Path(FLAGS.workdir) / "summary.md").read_text())


if __name__ == "__main__":
    run_launcher(main)
