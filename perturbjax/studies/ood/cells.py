"""The benchmark table as cells: which (model, held-out context) a workdir already holds.

A workdir is one table: one data set and one set of shared settings (`run.json`'s
fingerprint), filled by any number of invocations with any models and contexts. A cell is done
once its predictions file and its rows in `metrics.csv` are written, and `run.json` records it
with the model's resolved schedule. A rerun skips every done cell whose model still resolves
to the same schedule, reading its rows back instead of training; so a stopped run loses at
most the cell in progress, and the same command continues it.

Several workdirs of one table (the same fingerprint) can be filled apart, e.g. one model per
machine or per core, and merged: `merge_cells` brings their done cells into one workdir.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perturbjax.files import safe_name, write_csv
from perturbjax.metrics.calibration import CALIBRATED
from perturbjax.studies.ood.rows import LABELS, base_model
from perturbjax.studies.run_record import (
    RUN_FILE,
    WorkdirMismatchError,
    differences,
    normalised,
    write_record,
)

# Columns of metrics.csv computed from the whole table (or, the labels, from the recorded
# schedules), not stored per cell.
ACROSS_CONTEXTS = ("discrimination", "discrimination_ceiling", *LABELS)
# Columns that time a cell: they differ between two runs of the same cell.
TIMINGS = ("scoring_seconds", "reference_seconds", "train_seconds")
# A cell's files, per folder: responses/ is needed to read it back, predictions/ (for the
# figures) is copied when present.
CELL_FILES = {"responses": ".npz", "predictions": ".h5ad"}


# Settings recorded in each model's schedule rather than in the table's fingerprint: a table
# may hold models of several configurations and epoch counts, each cell stating its own.
PER_MODEL_SETTINGS = ("configuration", "epochs")


def table_fingerprint(fingerprint: dict) -> dict:
    """A fingerprint as the table compares it: normalised, without the per-model settings
    (a record written before they moved to the cells keeps them; it reads as the same)."""
    found = normalised(fingerprint)
    config = {k: v for k, v in found.get("config", {}).items() if k not in PER_MODEL_SETTINGS}
    return {**found, "config": config}


def cell_file(workdir: Path, folder: str, model: str, context: str) -> Path:
    """A cell's file in one of the `CELL_FILES` folders of `workdir` (named by `safe_name`:
    a context name from data never leaves the folder)."""
    return workdir / folder / safe_name(model) / f"{safe_name(context)}{CELL_FILES[folder]}"


def checkpoint_dir(workdir: Path, model: str, part: str) -> Path:
    """Where a model's checkpoints for one context (or "one_program") are kept."""
    return workdir / "checkpoints" / safe_name(model) / safe_name(part)


def _read_rows(table: Path) -> pd.DataFrame:
    """metrics.csv as written: round-trip floats, labels as strings."""
    return pd.read_csv(table, float_precision="round_trip",
                       dtype={"model": str, "context": str, "condition": str,
                              "decoded_as": str})


def _cell_rows(rows: pd.DataFrame, model: str, context: str) -> pd.DataFrame:
    """A cell's rows (a model's `@nearest` rows included)."""
    base = rows["model"].map(base_model)
    return rows[(base == model) & (rows["context"] == context)]


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
        rows = _read_rows(table)
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
            base = rows["model"].map(base_model)
            present = set(rows.loc[base == model, "context"])
            contexts = [c for c in cell["contexts"] if c in present]
            if contexts:
                cells.schedules[model], cells.done[model] = cell["schedule"], contexts
        base = rows["model"].map(base_model)
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
        part = _cell_rows(self.rows, model, context)
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


def _table(workdir: Path) -> tuple[dict, dict[str, dict], pd.DataFrame | None]:
    """A workdir's `run.json` and its cells, and its metrics.csv (None when absent)."""
    record_file, table = workdir / RUN_FILE, workdir / "metrics.csv"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    return record, record.get("cells", {}), _read_rows(table) if table.is_file() else None


def _scores(rows: pd.DataFrame) -> pd.DataFrame:
    """A cell's rows as two runs of it must agree on: the stored columns but the timings."""
    kept = [c for c in rows.columns
            if c not in (*ACROSS_CONTEXTS, *TIMINGS) and not c.endswith(CALIBRATED)]
    return rows[sorted(kept)].reset_index(drop=True)


def _agree(one: pd.DataFrame, other: pd.DataFrame) -> bool:
    """Two runs of a cell agree: the same rows and labels, and every score within float
    rounding (relative 1e-5). The same code on another CPU sums in another order: on Kang a
    reference's scores differ there by up to 1e-6 relative (float32 PCA distances)."""
    one, other = _scores(one), _scores(other)
    if list(one.columns) != list(other.columns) or len(one) != len(other):
        return False
    numeric = [c for c in one.columns if pd.api.types.is_numeric_dtype(one[c])
               and pd.api.types.is_numeric_dtype(other[c])]
    labels = [c for c in one.columns if c not in numeric]
    return (one[labels].astype(str).equals(other[labels].astype(str))
            and np.allclose(one[numeric].to_numpy(float), other[numeric].to_numpy(float),
                            rtol=1e-5, atol=1e-12, equal_nan=True))


def merge_cells(workdir: Path, sources: Sequence[Path], fingerprint: dict,
                models: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Bring into `workdir` every done cell of the `sources`, workdirs of the same table
    (`fingerprint`), or with `models` only those models' cells (the others are neither
    brought nor compared: a source's references computed on another machine round
    otherwise); returns the (model, context) cells brought.

    A source of another fingerprint, a model recorded with another schedule, a cell missing
    its responses file, or a cell both hold with other scores (beyond float rounding,
    `_agree`; timings aside) is refused before anything is written. `workdir`'s own cells
    are kept. Files are copied first and `run.json` is written last, so a merge stopped
    midway leaves `workdir` as it was. A source still running can be read: it writes a
    cell's files, then metrics.csv, then run.json, and its run.json is read first, so every
    cell it lists has its rows and files."""
    record, cells, rows = _table(workdir)
    cells = {m: {"schedule": c["schedule"], "contexts": list(c["contexts"])}
             for m, c in cells.items()}
    copies, added = [], {}
    for source in sources:
        theirs_record, theirs, their_rows = _table(source)
        if not theirs_record:
            raise WorkdirMismatchError(f"merge source {source}: no {RUN_FILE}; expected the "
                                       "workdir of a benchmark run")
        theirs_fingerprint = table_fingerprint(theirs_record["fingerprint"])
        if theirs_fingerprint != table_fingerprint(fingerprint):
            raise WorkdirMismatchError(
                f"merge source {source} holds another table ("
                + "; ".join(differences(theirs_fingerprint, table_fingerprint(fingerprint)))
                + "); nothing was changed")
        for model, cell in theirs.items():
            if models is not None and model not in models:
                continue
            mine = cells.setdefault(model, {"schedule": cell["schedule"], "contexts": []})
            if mine["schedule"] != cell["schedule"]:
                raise WorkdirMismatchError(
                    f"merge source {source}: model '{model}' was run with another schedule ("
                    + "; ".join(differences(mine["schedule"], cell["schedule"]))
                    + "); nothing was changed")
            for context in cell["contexts"]:
                part = (_cell_rows(their_rows, model, context) if their_rows is not None
                        else pd.DataFrame())
                if part.empty:
                    continue  # recorded, but its rows were never written: not done
                if context in mine["contexts"]:
                    held = added.get((model, context))
                    if held is None:
                        held = _cell_rows(rows, model, context)
                    if not _agree(part, held):
                        raise WorkdirMismatchError(
                            f"merge source {source}: cell ({model}, {context}) scores "
                            f"otherwise than in {workdir}; nothing was changed")
                    continue
                response = cell_file(source, "responses", model, context)
                if not response.is_file():
                    raise WorkdirMismatchError(
                        f"merge source {source}: cell ({model}, {context}) has no responses "
                        f"file {response}; nothing was changed")
                copies += [(cell_file(source, folder, model, context),
                            cell_file(workdir, folder, model, context)) for folder in CELL_FILES]
                added[model, context] = part
                mine["contexts"].append(context)
    if not added:
        return []
    workdir.mkdir(parents=True, exist_ok=True)
    for origin, target in copies:
        if origin.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    write_csv(workdir / "metrics.csv",
              pd.concat([*([] if rows is None else [rows]), *added.values()], ignore_index=True))
    write_record(workdir, fingerprint, record.get("done", []), record.get("missing", []),
                 record.get("error"), {m: c for m, c in cells.items() if c["contexts"]})
    return list(added)
