"""The out-of-distribution benchmark: hold out each context, predict its perturbed cells.

`run(config, workdir)` is the whole study: hold out, fit, predict, score, record. The package
reads in that order: `config` (the settings), `data` and `checks` (the data, and every problem
found before training), `truth` (what a held-out context's predictions are scored against),
`protocol` (the loop over contexts and models), `cells`, `predictions` and `table` (the
workdir's table, filled cell by cell), `report` (summary, rankings, figures).
"""

from perturbjax.studies.ood.checks import check_run
from perturbjax.studies.ood.config import DESIGNS, OODConfig, available_models, fit_settings
from perturbjax.studies.ood.data import load_data
from perturbjax.studies.ood.protocol import OODResults, held_out_split, model_schedules, run
from perturbjax.studies.ood.truth import ContextTruth, nearest_seen_condition

__all__ = ["DESIGNS", "ContextTruth", "OODConfig", "OODResults", "available_models",
           "check_run", "fit_settings", "held_out_split", "load_data", "model_schedules",
           "nearest_seen_condition", "run"]
