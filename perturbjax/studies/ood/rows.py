"""How the table names its rows: a model's own rows carry its name, and its predictions of a
dose never seen in training, decoded under the nearest seen dose, carry `<model>@nearest`.

This module is the one place that writes or reads that suffix; the rest of the study asks
`base_model` which model a row belongs to, and `floor_rows` which rows are floor references.
"""

from __future__ import annotations

from perturbjax.models import floor_references

NEAREST = "@nearest"  # suffix of a model's prediction with the nearest seen dose


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
