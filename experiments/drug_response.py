"""Launcher of the drug-sensitivity study (flags -> `perturbjax.studies.drug_response.run`).

Shared data (GDSC2 + CellBench in ../shared/data), Camptothecin, the original code's grid (about 12
minutes on 2 CPU cores):
  python experiments/drug_response.py --workdir runs/drug_response
Official GDSC release files (fitted dose-response table, RMA matrix), any drug:
  python experiments/drug_response.py --response GDSC2_fitted_dose_response.csv \
      --expression Cell_line_RMA_proc_basalExp.txt --drug Cisplatin --gene_filter 1.9,0
The download-free toy set (known answer, about 20 seconds):
  python experiments/drug_response.py --toy --grid small --workdir runs/drug_toy
"""

from __future__ import annotations

import logging
from pathlib import Path

from absl import app, flags

from perturbjax.cli import parse_seeds, run_launcher
from perturbjax.data import shared_data_dir
from perturbjax.data.cellbench import (
    ALL_RUNS,
    FIVE_LINE_PLATES,
    SYMBOLS_FILE,
    load_cellbench,
    read_gene_symbols,
)
from perturbjax.data.gdsc import SAMPLE_INFO_FILE, load_gdsc, load_gdsc_release, read_lineages
from perturbjax.drug.features import ZSCORED_FILTER
from perturbjax.drug.synthetic import make_toy_drug_data
from perturbjax.studies.drug_response import (
    CELLBENCH_LINES,
    FEATURES,
    GRIDS,
    DrugStudyConfig,
    run,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("drug", "Camptothecin", "GDSC2 drug name.")
flags.DEFINE_enum("measure", "LN_IC50", ["LN_IC50", "AUC"], "Response measure.")
flags.DEFINE_string("data_dir", None, "Shared data folder with gdsc/, cellbench/, gene_map/ "
                    "(default: $PERTURBJAX_DATA or ../shared/data).")
flags.DEFINE_string("response", None, "Official GDSC fitted dose-response table (CSV/XLSX).")
flags.DEFINE_string("expression", None, "Official GDSC RMA expression matrix (TXT).")
flags.DEFINE_list("cellbench_runs", list(FIVE_LINE_PLATES),
                  f"CellBench runs with the single cells (any of {list(ALL_RUNS)}).")
flags.DEFINE_string("lineages", None, "DepMap sample-info CSV for the lineage reference "
                    "(default: the shared copy when present; 'none' skips it).")
flags.DEFINE_bool("toy", False, "Use the download-free toy data set instead.")
flags.DEFINE_enum("features", "quantiles", list(FEATURES), "Feature representation.")
flags.DEFINE_list("gene_filter", None,
                  "min mean, min log variance of the gene filter (the original code's on log "
                  f"expression: 1.9,0; default {ZSCORED_FILTER} for the z-scored shared "
                  "matrix, none for the toy set).")
flags.DEFINE_enum("grid", "original", sorted(GRIDS), "Hyper-parameter grid.")
flags.DEFINE_integer("folds", 5, "Outer folds over cell lines.")
flags.DEFINE_integer("repeats", 2, "Repeats of the outer k-fold.")
flags.DEFINE_list("seeds", ["0"], "Seeds of every grid run.")
flags.DEFINE_list("final_seeds", ["0", "1", "2", "3", "4"], "Seeds of the final ensemble.")
flags.DEFINE_integer("permutations", 1000, "Random gene sets in the DREEP null.")
flags.DEFINE_integer("seed", 42, "Seed of the splits and the null.")
flags.DEFINE_string("workdir", "runs/drug_response", "Output folder.")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger("perturbjax").setLevel(logging.INFO)
    held_out, gene_filter, lineages = CELLBENCH_LINES, ZSCORED_FILTER, None
    if FLAGS.gene_filter:
        gene_filter = tuple(float(v) for v in FLAGS.gene_filter)
    if FLAGS.toy:
        bulk, cells, truth = make_toy_drug_data()
        held_out = tuple(truth["held_out"])
        gene_filter = gene_filter if FLAGS.gene_filter else None
    else:
        data_dir = FLAGS.data_dir or shared_data_dir()
        if (FLAGS.response is None) != (FLAGS.expression is None):
            raise app.UsageError("--response and --expression go together")
        if FLAGS.response:
            bulk = load_gdsc_release(FLAGS.response, FLAGS.expression, FLAGS.drug, FLAGS.measure)
        elif data_dir is None:
            raise app.UsageError("no data folder: pass --data_dir, set PERTURBJAX_DATA, "
                                 "or use --toy")
        else:
            bulk = load_gdsc(data_dir, FLAGS.drug, FLAGS.measure)
        if data_dir is None:
            raise app.UsageError("the single cells need the shared data folder (--data_dir)")
        symbols = read_gene_symbols(Path(data_dir) / SYMBOLS_FILE)
        cells = load_cellbench(Path(data_dir) / "cellbench", FLAGS.cellbench_runs, symbols)
        lineage_file = FLAGS.lineages or Path(data_dir) / SAMPLE_INFO_FILE
        if FLAGS.lineages != "none" and Path(lineage_file).is_file():
            lineages = read_lineages(lineage_file)
    config = DrugStudyConfig(
        features=FLAGS.features, gene_filter=gene_filter,
        grid=FLAGS.grid, folds=FLAGS.folds, repeats=FLAGS.repeats,
        seeds=parse_seeds(FLAGS.seeds, "seeds"),
        final_seeds=parse_seeds(FLAGS.final_seeds, "final_seeds"), held_out_lines=held_out,
        permutations=FLAGS.permutations, seed=FLAGS.seed)
    run(bulk, cells, config, FLAGS.workdir, lineages)
    print((Path(FLAGS.workdir) / "summary.md").read_text())


if __name__ == "__main__":
    run_launcher(main)
