"""Signature exposures from single-cell expression: per-signature ridge vs multi-task lasso.

`run(config, workdir)` (`protocol`) runs the experiments on the cells of `data`, split by
`splits`, with both models fitted and scored by `fitting`; `genes` reads what the models
selected and `report` writes the tables. `config` holds the settings.
"""

from perturbjax.studies.signatures.config import EXPERIMENTS, MODELS, SignatureStudyConfig
from perturbjax.studies.signatures.fitting import Evaluation, Fitted, fit_models, scores
from perturbjax.studies.signatures.protocol import (
    SignatureResults,
    run,
    run_experiment,
    run_on,
)
from perturbjax.studies.signatures.splits import cluster_split, expression_clusters, random_split

__all__ = ["EXPERIMENTS", "MODELS", "Evaluation", "Fitted", "SignatureResults",
           "SignatureStudyConfig", "cluster_split", "expression_clusters", "fit_models",
           "random_split", "run", "run_experiment", "run_on", "scores"]
