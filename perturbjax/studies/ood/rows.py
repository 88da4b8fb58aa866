"""How the table names and labels its rows.

A model's own rows carry its name, and its predictions of a dose never seen in training,
decoded under the nearest seen dose, carry `<model>@nearest`. This module is the one place
that writes or reads that suffix; the rest of the study asks `base_model` which model a row
belongs to, and `floor_rows` which rows are floor references. `labelled` states on every row
the configuration and the training budget its model's recorded schedule ran.
"""

from __future__ import annotations

import pandas as pd

from perturbjax.models import FitSettings, floor_references, get_model, model_names
from perturbjax.models.peer import peer_description

NEAREST = "@nearest"  # suffix of a model's prediction with the nearest seen dose
LABELS = ("configuration", "budget")  # columns stated from each model's recorded schedule


def nearest_row(model: str) -> str:
    """The row name of `model`'s predictions decoded under the nearest seen dose."""
    return model + NEAREST


def base_model(row: str) -> str:
    """The model a row of the table belongs to."""
    return row[: -len(NEAREST)] if row.endswith(NEAREST) else row


def floor_rows() -> dict[str, str]:
    """Row name -> the floor reference it is (`metrics.calibration`'s `floors`)."""
    floors = floor_references()
    return {**{m: m for m in floors}, **{nearest_row(m): m for m in floors}}


def labelled(table: pd.DataFrame, schedules: dict[str, dict | None], settings: FitSettings
             ) -> pd.DataFrame:
    """`table` with the `LABELS` columns after `model`, from each model's recorded schedule
    (a model no longer registered, such as a peer of another run, as a peer)."""
    if table.empty:
        return table
    described = {model: (get_model(model).describe(schedule, settings)
                         if model in model_names() else peer_description(schedule))
                 for model, schedule in schedules.items()}
    out = table.drop(columns=[c for c in LABELS if c in table.columns])
    models = out["model"].map(base_model)
    for i, column in enumerate(LABELS):
        out.insert(1 + i, column, models.map(lambda m, c=column: described.get(m, {}).get(c, "")))
    return out
