"""What every study's report shares: markdown tables, mean ± sd tables, and the writing of its
configuration, CSV tables and summary into the workdir (each file whole or not at all)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perturbjax.files import write_csv, write_text


def markdown_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """A GitHub-flavoured markdown table of `frame` (index included)."""
    frame = frame.reset_index()
    cells = [[floatfmt.format(v) if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def mean_sd_table(frame: pd.DataFrame, by: str | list[str], columns: Sequence[str],
                  order: Sequence | None = None, digits: int = 3) -> pd.DataFrame:
    """'mean ± sd' of each column per `by` group (sd 0 for a group of one; '–' where the
    group has no value, 'inf' where a value is infinite), rows in `order` (those present) or
    in order of appearance."""
    stats = frame.groupby(by, sort=False)[list(columns)].agg(["mean", "std"])
    table = pd.DataFrame(index=stats.index)

    def cell(mean: float, sd: float) -> str:
        if np.isnan(mean):
            return "–"
        return "inf" if np.isinf(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"

    for column in columns:
        mean, sd = stats[(column, "mean")], stats[(column, "std")].fillna(0.0)
        table[column] = [cell(m, s) for m, s in zip(mean, sd, strict=True)]
    if order is not None:
        table = table.loc[[m for m in order if m in table.index]]
    return table


def write_config(workdir: Path, config: Any) -> None:
    """The resolved configuration (a dataclass) as `config.json`."""
    write_text(workdir / "config.json",
               json.dumps(dataclasses.asdict(config), indent=2, default=str))


def write_report(workdir: Path, summary: str, tables: Mapping[str, pd.DataFrame],
                 indexed: Collection[str] = ()) -> None:
    """Every table as `<name>.csv` (with its index for the names in `indexed`), then the
    markdown summary as `summary.md`."""
    for name, frame in tables.items():
        write_csv(workdir / f"{name}.csv", frame, index=name in indexed)
    write_text(workdir / "summary.md", summary)
