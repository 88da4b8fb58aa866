"""Launcher of the out-of-distribution benchmark (flags -> `perturbjax.studies.ood.run`).

Synthetic default (no download; 4 minutes on 2 CPU cores, measured):
  python experiments/ood_benchmark.py --workdir runs/ood_synthetic
Kang PBMC, every cell type held out, 3 seeds (about an hour on 2 CPU cores):
  python experiments/ood_benchmark.py --data ../shared/data/kang/valid_pbmc.h5ad \
      --workdir runs/ood_kang
Every model the multi-dose design allows, dose 1 never seen, continuous dose encoding (hours
on 2 CPU cores, not timed to the end):
  python experiments/ood_benchmark.py --design multidose --models all \
      --conditioning log_dose --held_out_conditions 1 --workdir runs/ood_multidose
"""

from __future__ import annotations

import logging

from absl import flags
from absl import logging as absl_logging

from perturbjax.cli import parse_seeds, run_launcher
from perturbjax.models import LEARNED, REFERENCES
from perturbjax.ot import PairingConfig
from perturbjax.studies.ood import DESIGNS, OODConfig, available_models, run

FLAGS = flags.FLAGS
flags.DEFINE_enum("design", "single", DESIGNS, "single perturbation, multi-dose or species.")
flags.DEFINE_string("data", "synthetic", "'synthetic' or the path of an h5ad file (for "
                    "multidose / species: scVIDR's Nault / scGen's species schema).")
flags.DEFINE_string("context_key", "cell_type", "obs column of the held-out unit.")
flags.DEFINE_string("condition_key", "condition", "obs column of the condition.")
flags.DEFINE_string("control_value", "control", "Value of the condition column for controls.")
flags.DEFINE_bool("counts", False, "X holds raw counts: apply normalize_total + log1p first.")
flags.DEFINE_integer("n_top_genes", None, "Keep this many HVGs of the training pool.")
flags.DEFINE_list("held_out", [], "Contexts to hold out (default: every context).")
flags.DEFINE_list("models", list(OODConfig.__dataclass_fields__["models"].default),
                  f"Models to run, or 'all' (those the design allows): "
                  f"{list(LEARNED) + list(REFERENCES)}.")
flags.DEFINE_string("configuration", "default", "Named model configuration: default | original.")
flags.DEFINE_list("seeds", ["1", "2", "19193"], "Seeds, trained together as one vmapped program.")
flags.DEFINE_integer("epochs", None, "Override the configuration's number of epochs.")
flags.DEFINE_integer("checkpoint_every", 25, "Epochs between orbax checkpoints (0: none).")
flags.DEFINE_enum("conditioning", "one_hot", ["one_hot", "log_dose"],
                  "Condition vector of the learned models: one-hot, or log1p(dose).")
flags.DEFINE_list("held_out_conditions", [], "Conditions (doses) removed from training for "
                  "every context; scored in a table of their own.")
flags.DEFINE_float("ot_relative_epsilon", 0.01, "Sinkhorn epsilon / mean cost of a group.")
flags.DEFINE_bool("ot_sample", False, "Draw OT partners from the coupling row (else argmax).")
flags.DEFINE_integer("ceiling_repeats", OODConfig.__dataclass_fields__["ceiling_repeats"].default,
                     "Random half splits of the real cells behind each replicate ceiling.")
flags.DEFINE_bool("figures", True, "Write PNG figures.")
flags.DEFINE_string("workdir", "runs/ood_benchmark", "Output folder (resumes if it exists).")
flags.DEFINE_bool("overwrite", False, "Replace a workdir that holds another run (other data, "
                  "configuration or schedule) instead of refusing it.")


def main(argv: list[str]) -> None:
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)  # quiet orbax's per-save INFO lines
    logging.getLogger("perturbjax").setLevel(logging.INFO)  # keep one progress line per epoch
    models = (available_models(FLAGS.design) if FLAGS.models == ["all"]
              else tuple(FLAGS.models))
    config = OODConfig(
        design=FLAGS.design, data=FLAGS.data, context_key=FLAGS.context_key,
        condition_key=FLAGS.condition_key, control_value=FLAGS.control_value,
        counts=FLAGS.counts, n_top_genes=FLAGS.n_top_genes,
        held_out=tuple(FLAGS.held_out), models=models,
        configuration=FLAGS.configuration, seeds=parse_seeds(FLAGS.seeds, "seeds"),
        epochs=FLAGS.epochs, checkpoint_every=FLAGS.checkpoint_every, figures=FLAGS.figures,
        ceiling_repeats=FLAGS.ceiling_repeats,
        conditioning=FLAGS.conditioning, held_out_conditions=tuple(FLAGS.held_out_conditions),
        pairing=PairingConfig(relative_epsilon=FLAGS.ot_relative_epsilon, sample=FLAGS.ot_sample),
    )
    results = run(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
    print(results.summary)
    print(f"outputs in {FLAGS.workdir}: metrics.csv, summary.md, ranking.csv, figures/")


if __name__ == "__main__":
    run_launcher(main)
