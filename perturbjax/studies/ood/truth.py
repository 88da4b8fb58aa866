"""What every prediction of a held-out context is scored against, and the scoring.

A context's truth is its real response per condition and its replicate ceilings; `plan` says
which rows a model gets on it (a condition never seen in training is also decoded under the
nearest seen dose, `<model>@nearest`), and `score` turns a model's predictions into rows.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from perturbjax.data.splits import HoldOut
from perturbjax.metrics import HeldOutReference, evaluate_prediction
from perturbjax.metrics.calibration import CEILING, Ceiling
from perturbjax.metrics.evaluate import evaluation_ceiling
from perturbjax.metrics.response import mean_response
from perturbjax.models import get_model
from perturbjax.models.fitting import ConditionEncoding
from perturbjax.models.peer import Predictions, RunRecords
from perturbjax.studies.ood.config import OODConfig
from perturbjax.studies.ood.rows import nearest_row
from perturbjax.studies.ood.table import Scored


def nearest_seen_condition(condition: str, seen: list[str]) -> str:
    """The seen dose closest to `condition` on the log1p(dose) scale (labels are doses)."""
    try:
        target, doses = np.log1p(float(condition)), np.log1p([float(c) for c in seen])
    except ValueError as error:
        raise ValueError(f"held-out conditions need numeric dose labels; got '{condition}' "
                         f"and {seen}") from error
    return seen[int(np.argmin(np.abs(doses - target)))]


@dataclasses.dataclass
class ContextTruth:
    """A held-out context's split and what every prediction of it is scored against: the
    real response per condition (`references`), the replicate ceilings, and the seconds
    these took. `nearest` maps each condition never seen in training to its nearest seen
    dose."""

    split: HoldOut
    conditions: list[str]
    nearest: dict[str, str]
    references: dict[str, HeldOutReference]
    ceilings: dict[str, Ceiling]
    seconds: float

    @classmethod
    def build(cls, split: HoldOut, config: OODConfig, encoding: ConditionEncoding
              ) -> ContextTruth:
        spec = config.spec
        condition_of = split.truth.obs[spec.condition_key].astype(str)
        conditions = [c for c in encoding.labels
                      if c != str(spec.control_value) and (condition_of == c).any()]
        seen = sorted(set(split.train.obs[spec.condition_key].astype(str))
                      - {str(spec.control_value)})
        nearest = {c: nearest_seen_condition(c, seen) for c in conditions
                   if c in config.held_out_conditions}
        started = time.perf_counter()
        references = {c: HeldOutReference.build(
            split.control.X, split.truth.X[(condition_of == c).to_numpy()],
            split.control.var_names) for c in conditions}
        ceilings = {c: evaluation_ceiling(references[c], config.ceiling_repeats)
                    for c in conditions}
        return cls(split, conditions, nearest, references, ceilings,
                   time.perf_counter() - started)

    def plan(self, model: str) -> list[tuple[str, str, str]]:
        """(name in the table, condition scored, condition decoded) of a model's rows.

        A condition in `config.held_out_conditions` is scored twice per learned model:
        decoded under its own code (`<model>`) and under the nearest seen dose
        (`<model>@nearest`); references and single-perturbation models, which need training
        cells of the condition, only the latter."""
        direct = get_model(model).decodes_unseen_conditions
        plan = [(model, c, c) for c in self.conditions if direct or c not in self.nearest]
        return plan + [(nearest_row(model), c, self.nearest[c]) for c in self.conditions
                       if c in self.nearest]


def score(model: str, truth: ContextTruth, predictions: Predictions, runs: RunRecords
           ) -> Scored:
    """Every (seed, condition) row of one model on one context, and its predicted
    responses; each row carries the context's ceiling of every metric."""
    part, started = Scored(), time.perf_counter()
    for name, condition, decoded_as in truth.plan(model):
        ref = truth.references[condition]
        for run_info, pred in zip(runs[decoded_as], predictions[decoded_as], strict=True):
            scores = evaluate_prediction(ref, pred, seed=run_info["seed"] or 0)
            part.rows.append({
                "model": name, "context": truth.split.context, "condition": condition,
                "decoded_as": decoded_as, "held_out_condition": condition in truth.nearest,
                **run_info, **scores,
                **{k + CEILING: v for k, v in truth.ceilings[condition].scores.items()}})
            part.predicted.append(mean_response(pred, ref.response.control_mean))
    for row in part.rows:
        row["scoring_seconds"] = time.perf_counter() - started
        row["reference_seconds"] = truth.seconds
    return part

