"""The benchmark's table so far: its rows, and the scores computed across its contexts.

`Scored` holds every row scored so far with its predicted response, and per context the real
responses, the replicate ceilings and the genes. From them it makes the metrics table
(discrimination across contexts, every score calibrated between floor and ceiling) and the
conformal intervals' coverage (`metrics.conformal`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from perturbjax.metrics.calibration import (
    CEILING,
    Ceiling,
    add_discrimination,
    calibrate,
)
from perturbjax.metrics.conformal import LEVELS, leave_one_context_out
from perturbjax.models import floor_references
from perturbjax.studies.ood.rows import base_model, floor_rows


@dataclasses.dataclass
class Scored:
    """The rows of a run so far, and what the run-level scores need besides them: each row's
    predicted response, per (context, condition) the real response and the ceiling, and each
    context's genes (HVGs chosen per training pool may differ between contexts)."""

    rows: list[dict] = dataclasses.field(default_factory=list)
    predicted: list[np.ndarray] = dataclasses.field(default_factory=list)
    real: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    ceilings: dict[tuple[str, str], Ceiling] = dataclasses.field(default_factory=dict)
    genes: dict[str, pd.Index] = dataclasses.field(default_factory=dict)

    def add(self, other: Scored) -> None:
        """Append the rows and responses of another part of the run (one cell)."""
        self.rows += other.rows
        self.predicted += other.predicted
        self.real.update(other.real)
        self.ceilings.update(other.ceilings)
        self.genes.update(other.genes)

    def add_context(self, context: str, genes: pd.Index, real: dict[str, np.ndarray],
                    ceilings: dict[str, Ceiling]) -> None:
        """A context's genes, and per condition its real response and ceiling."""
        self.genes[context] = pd.Index(genes.astype(str))
        for condition in real:
            self.real[(context, condition)] = real[condition]
            self.ceilings[(context, condition)] = ceilings[condition]

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, seeds as integers (blank for the references)."""
        frame = pd.DataFrame(self.rows)
        frame["seed"] = pd.array([None if pd.isna(s) else int(s) for s in frame["seed"]],
                                 dtype="Int64")
        return frame

    def _on_common_genes(self) -> Scored:
        """The responses restricted to the genes every context has, in one order: what the
        scores across contexts compare gene by gene."""
        common = sorted(set.intersection(*(set(g) for g in self.genes.values())))
        columns = {c: genes.get_indexer(common) for c, genes in self.genes.items()}
        contexts = [row["context"] for row in self.rows]
        return Scored(
            self.rows, [p[columns[c]] for p, c in zip(self.predicted, contexts, strict=True)],
            {key: r[columns[key[0]]] for key, r in self.real.items()},
            {key: dataclasses.replace(ceiling, predicted=ceiling.predicted[:, columns[key[0]]],
                                      real=ceiling.real[:, columns[key[0]]])
             for key, ceiling in self.ceilings.items()},
            {c: pd.Index(common) for c in self.genes})

    def _settled(self) -> Scored:
        """The contexts whose floor references are all scored (calibration needs them): a
        context still in progress is left out."""
        models: dict[str, set[str]] = {}
        for row in self.rows:
            models.setdefault(row["context"], set()).add(base_model(row["model"]))
        settled = {c for c, scored in models.items() if set(floor_references()) <= scored}
        keep = [i for i, row in enumerate(self.rows) if row["context"] in settled]
        return Scored([self.rows[i] for i in keep], [self.predicted[i] for i in keep],
                      {k: v for k, v in self.real.items() if k[0] in settled},
                      {k: v for k, v in self.ceilings.items() if k[0] in settled},
                      {c: g for c, g in self.genes.items() if c in settled})

    def table(self) -> pd.DataFrame:
        """The metrics table of the settled contexts: discrimination across them (on their
        common genes), every score calibrated between its floor and its ceiling."""
        settled = self._settled()
        if not settled.rows:
            return pd.DataFrame()
        common = settled._on_common_genes()
        metrics = add_discrimination(common.frame(), dict(enumerate(common.predicted)),
                                     common.real, common.ceilings)
        names = [c[: -len(CEILING)] for c in metrics.columns if c.endswith(CEILING)]
        return calibrate(metrics, names, floor_rows())

    def coverage(self, levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
        """Per (model, condition): the conformal interval's coverage and width on each
        context, calibrated on the other contexts' leave-one-out residuals, beside the
        uncalibrated seed spread's (`metrics.conformal.leave_one_context_out`)."""
        settled = self._settled()
        if not settled.rows:
            return pd.DataFrame()
        common = settled._on_common_genes()
        rows = common.frame()
        tables = []
        for (model, condition), group in rows.groupby(["model", "condition"], sort=False):
            if group["context"].nunique() < 2:
                continue
            members = {c: np.stack([common.predicted[i] for i in part.index])
                       for c, part in group.groupby("context")}
            table = leave_one_context_out(
                {c: m.mean(axis=0) for c, m in members.items()},
                {c: common.real[(c, condition)] for c in members}, members, levels)
            tables.append(table.assign(model=model, condition=condition))
        if not tables:
            return pd.DataFrame()
        table = pd.concat(tables, ignore_index=True)
        return table[["model", "condition", *table.columns.drop(["model", "condition"])]]
