"""The PerturbX study: cross-validated prediction of a drug's mean effect on unseen cell lines.

`run(config, workdir)` (`protocol`) holds lines out in stratified folds (`folds`), trains every
fold x seed as one program, predicts, scores, ranks genes and writes the tables (`report`);
`config` holds its settings and `data` its data sources.
"""

from perturbjax.studies.perturbx.config import DEFAULT_FOLDS, PerturbXStudyConfig
from perturbjax.studies.perturbx.folds import (
    FoldCountError,
    fold_count,
    fold_rows,
    gene_weights,
    line_status,
    make_folds,
)
from perturbjax.studies.perturbx.protocol import PerturbXResults, run, run_on, shared_arrays

__all__ = ["DEFAULT_FOLDS", "FoldCountError", "PerturbXResults", "PerturbXStudyConfig",
           "fold_count", "fold_rows", "gene_weights", "line_status", "make_folds", "run",
           "run_on", "shared_arrays"]
