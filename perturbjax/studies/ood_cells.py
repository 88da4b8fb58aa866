"""The benchmark table as cells: which (model, held-out context) a workdir already holds.

A workdir is one table: one data set and one set of shared settings (`run.json`'s
fingerprint), filled by any number of invocations with any models and contexts. A cell is done
once its predictions file and its rows in `metrics.csv` are written, and `run.json` records it
with the model's resolved schedule. A rerun skips every done cell whose model still resolves
to the same schedule, reading its rows back instead of training; so a stopped run loses at
most the cell in progress, and the same command continues it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from perturbjax.metrics.calibration import CALIBRATED
from perturbjax.studies.run_record import RUN_FILE, WorkdirMismatchError, differences, normalised

# Columns of metrics.csv computed from the whole table, not stored per cell.
ACROSS_CONTEXTS = ("discrimination", "discrimination_ceiling")


@dataclasses.dataclass
class Cells:
    """The done cells of a workdir: per model, its recorded schedule and done contexts, and
    the rows (metrics.csv, the per-table columns dropped) of those cells."""

    schedules: dict[str, Any] = dataclasses.field(default_factory=dict)
    done: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    rows: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @classmethod
    def read(cls, workdir: Path, schedules: dict[str, Any], overwrite: bool) -> Cells:
        """The cells recorded in `workdir` (already claimed for this table). A model whose
        schedule now resolves differently is refused, naming what changed, unless
        `overwrite` drops its cells (they are trained again)."""
        record, table = workdir / RUN_FILE, workdir / "metrics.csv"
        if not record.is_file() or not table.is_file():
            return cls()
        recorded = json.loads(record.read_text()).get("cells", {})
        rows = pd.read_csv(table, float_precision="round_trip",
                           dtype={"model": str, "context": str, "condition": str,
                                  "decoded_as": str})
        cells = cls()
        for model, cell in recorded.items():
            if model in schedules and cell["schedule"] != normalised(schedules[model]):
                if overwrite:
                    continue
                raise WorkdirMismatchError(
                    f"workdir {workdir}: model '{model}' now resolves to another schedule ("
                    + "; ".join(differences(cell["schedule"], normalised(schedules[model])))
                    + "); nothing was changed. Use a fresh workdir, or overwrite=True "
                    "(--overwrite) to train its cells again")
            base = rows["model"].str.split("@").str[0]
            present = set(rows.loc[base == model, "context"])
            contexts = [c for c in cell["contexts"] if c in present]
            if contexts:
                cells.schedules[model], cells.done[model] = cell["schedule"], contexts
        base = rows["model"].str.split("@").str[0]
        mine = [cells.has(m, c) for m, c in zip(base, rows["context"], strict=True)]
        stored = [c for c in rows.columns
                  if c not in ACROSS_CONTEXTS and not c.endswith(CALIBRATED)]
        cells.rows = rows.loc[mine, stored].reset_index(drop=True)
        return cells

    def has(self, model: str, context: str) -> bool:
        return context in self.done.get(model, [])

    def contexts(self) -> list[str]:
        """Every context with a done cell, in first-seen order."""
        return list(dict.fromkeys(c for contexts in self.done.values() for c in contexts))

    def models(self, context: str) -> list[str]:
        return [m for m, contexts in self.done.items() if context in contexts]

    def rows_of(self, model: str, context: str) -> list[dict]:
        """The stored rows of a done cell (a model's `@nearest` rows included), each seed an
        int or None (a reference) as when it was scored."""
        if self.rows.empty:
            return []
        base = self.rows["model"].str.split("@").str[0]
        part = self.rows[(base == model) & (self.rows["context"] == context)]
        return [row | {"seed": None if pd.isna(row["seed"]) else int(row["seed"])}
                for row in part.to_dict("records")]

    def add(self, model: str, context: str, schedule: Any) -> None:
        self.schedules[model] = normalised(schedule)
        self.done.setdefault(model, [])
        if context not in self.done[model]:
            self.done[model].append(context)

    def record(self) -> dict[str, dict]:
        """What `run.json` keeps of the cells."""
        return {m: {"schedule": self.schedules[m], "contexts": list(contexts)}
                for m, contexts in self.done.items()}
