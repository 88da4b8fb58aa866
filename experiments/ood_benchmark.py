"""Launcher of the out-of-distribution benchmark (flags -> `perturbjax.studies.ood.run`).

Synthetic default (no download; MTFlow and four references; about 10 minutes on one CPU core,
measured):
  python experiments/ood_benchmark.py --workdir runs/ood_synthetic
Kang PBMC, every cell type held out, 3 seeds (about an hour on 2 CPU cores):
  python experiments/ood_benchmark.py --data ../shared/data/kang/valid_pbmc.h5ad \
      --workdir runs/ood_kang
Conformal coverage on 10 exchangeable synthetic types (a finite 90% interval needs 9
calibration contexts; 13 minutes on 2 CPU cores):
  python experiments/ood_benchmark.py --synthetic_types 10 \
      --models mtae,scgen,control,mean_shift,mean_shift_balanced,linear --figures=false \
      --workdir runs/conformal_synthetic
Every model the multi-dose design allows, dose 1 never seen, continuous dose encoding (hours
on 2 CPU cores, not timed to the end):
  python experiments/ood_benchmark.py --design multidose --models all \
      --conditioning log_dose --held_out_conditions 1 --workdir runs/ood_multidose
"""

from __future__ import annotations

from absl import flags
from absl import logging as absl_logging

from perturbjax.cli import config_from_flags, define_flags, run_launcher, show_progress
from perturbjax.data import SyntheticConfig
from perturbjax.models import configuration_names, model_names
from perturbjax.models.mtae import CONDITIONINGS
from perturbjax.ot import PairingConfig
from perturbjax.studies.ood import DESIGNS, OODConfig, available_models, run

SETTINGS = ("design", "data", "context_key", "condition_key", "control_value", "counts",
            "n_top_genes", "held_out", "models", "configuration", "seeds", "epochs",
            "checkpoint_every", "conditioning", "held_out_conditions", "ceiling_repeats",
            "figures", "one_program")
define_flags(OODConfig, {
    "design": "single perturbation, multi-dose or species.",
    "data": "'synthetic' or the path of an h5ad file (for multidose / species: scVIDR's Nault "
            "/ scGen's species schema).",
    "context_key": "obs column of the held-out unit.",
    "condition_key": "obs column of the condition.",
    "control_value": "Value of the condition column for controls.",
    "counts": "X holds raw counts: apply normalize_total + log1p first.",
    "n_top_genes": "Keep this many HVGs of the training pool.",
    "held_out": "Contexts to hold out (default: every context).",
    "models": f"Models to run, or 'all' (those the design allows): {list(model_names())}.",
    "configuration": "Named configuration of the learned models: "
                     f"{' | '.join(configuration_names())} (a baseline runs its published one "
                     "under any name).",
    "seeds": "Seeds, trained together as one vmapped program.",
    "epochs": "Override the configuration's number of epochs.",
    "checkpoint_every": "Epochs between orbax checkpoints (0: none).",
    "conditioning": "Condition vector of the learned models: one-hot, or log1p(dose).",
    "held_out_conditions": "Conditions (doses) removed from training for every context; "
                           "scored in a table of their own.",
    "ceiling_repeats": "Random half splits of the real cells behind each replicate ceiling.",
    "figures": "Write PNG figures.",
    "one_program": "Train each learned model on all its held-out contexts at once, as folds "
                   "of one program (one compilation per model; for accelerators).",
}, include=SETTINGS, choices={"design": DESIGNS, "conditioning": CONDITIONINGS})
define_flags(SyntheticConfig, {"n_types": "Cell types of the embedded synthetic data."},
             include=("n_types",), names={"n_types": "synthetic_types"})
define_flags(PairingConfig, {"relative_epsilon": "Sinkhorn epsilon / mean cost of a group.",
                             "sample": "Draw OT partners from the coupling row (else argmax)."},
             include=("relative_epsilon", "sample"),
             names={"relative_epsilon": "ot_relative_epsilon", "sample": "ot_sample"})
flags.DEFINE_string("workdir", "runs/ood_benchmark", "Output folder: one table, whose finished "
                    "cells (model, context) are read back, not trained again.")
flags.DEFINE_bool("overwrite", False, "Replace a workdir that holds another run (other data, "
                  "configuration or schedule) instead of refusing it.")
flags.DEFINE_list("merge_from", [], "Workdirs of the same table filled apart (e.g. one model "
                  "per machine): their finished cells are merged into --workdir first.")
flags.DEFINE_list("merge_models", None, "With --merge_from: merge only these models' cells "
                  "(others are neither brought nor compared; e.g. a source whose references "
                  "were computed on another machine).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)  # quiet orbax's per-save INFO lines
    show_progress(FLAGS.progress)
    models = (available_models(FLAGS.design) if FLAGS.models == ["all"]
              else tuple(FLAGS.models))
    pairing = config_from_flags(PairingConfig, include=("relative_epsilon", "sample"),
                                names={"relative_epsilon": "ot_relative_epsilon",
                                       "sample": "ot_sample"})
    synthetic = config_from_flags(SyntheticConfig, include=("n_types",),
                                  names={"n_types": "synthetic_types"})
    config = config_from_flags(OODConfig, include=SETTINGS, models=models, pairing=pairing,
                               synthetic=synthetic)
    results = run(config, FLAGS.workdir, overwrite=FLAGS.overwrite,
                  merge_from=FLAGS.merge_from, merge_models=FLAGS.merge_models)
    print(results.summary)
    print(f"outputs in {FLAGS.workdir}: metrics.csv, summary.md, ranking.csv, figures/")


if __name__ == "__main__":
    run_launcher(main)
