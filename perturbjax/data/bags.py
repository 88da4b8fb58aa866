"""Cells grouped for set (multiple-instance) models: one row per (context, perturbation).

A row's input is a bag of its context's unperturbed cells, its target the mean differential
expression: mean(perturbed cells) - mean(unperturbed cells). The cells stay in one array,
sorted so that each context's control cells and each (context, perturbation)'s treated cells
are contiguous; a row only stores where its blocks start and how many cells they hold, so
bags are bootstrapped on the device by index arithmetic (see `perturbjax.models.perturbx`).
"""

from __future__ import annotations

import dataclasses
from typing import TypedDict

import anndata as ad
import numpy as np

from perturbjax.data.schema import DataValidationError, PerturbationSpec, validate


class BagBatch(TypedDict, total=False):
    """The arrays a set model's objective sees: a row table (`table`) gathered per mini-batch,
    or full bags (`full_bags`) for prediction, beside the shared and per-fold arrays."""

    perturbation: np.ndarray  # (rows, perturbations) one-hot
    control_start: np.ndarray  # (rows,) first control cell of the row's context in `cells`
    control_count: np.ndarray  # (rows,) its number of control cells
    treated_start: np.ndarray  # (rows,) first treated cell of the row in `cells`
    treated_count: np.ndarray  # (rows,)
    target: np.ndarray  # (rows, genes) mean effect: treated mean - control mean
    bag: np.ndarray  # (rows, cells, genes) every control cell of the row's context, padded
    mask: np.ndarray  # (rows, cells) which of them are real
    cells: np.ndarray  # (cells, genes), shared: the pool bags are drawn from
    gene_mean: np.ndarray  # (genes,), shared: the control cells' mean (input standardisation)
    gene_scale: np.ndarray  # (genes,), shared: their standard deviation, floored
    gene_weights: np.ndarray  # (genes,), per fold: loss weight of each gene


@dataclasses.dataclass
class BagData:
    """Bags and targets of every usable (context, perturbation) pair.

    Attributes:
      cells: (n_cells, genes) float32, control blocks then treated blocks.
      genes: gene names; contexts: context names (one per context with control cells).
      perturbations: the non-control conditions, in one-hot order.
      row_context, row_perturbation: (rows,) indices into `contexts` / `perturbations`.
      control_start, control_count: (contexts,) each context's control block.
      treated_start, treated_count: (rows,) each row's treated block.
      control_means: (contexts, genes); targets: (rows, genes) population mean DE.
    """

    cells: np.ndarray
    genes: np.ndarray
    contexts: np.ndarray
    perturbations: tuple[str, ...]
    row_context: np.ndarray
    row_perturbation: np.ndarray
    control_start: np.ndarray
    control_count: np.ndarray
    treated_start: np.ndarray
    treated_count: np.ndarray
    control_means: np.ndarray
    targets: np.ndarray

    @classmethod
    def from_anndata(cls, adata: ad.AnnData, spec: PerturbationSpec,
                     min_cells: int = 10) -> BagData:
        """Every (context, perturbation) with at least `min_cells` control and treated cells.

        `adata.X` should already be log-normalised: targets are differences of its means.
        """
        source = adata.uns.get("source")
        validate(adata, spec, source=source)
        where = f"{source}: " if source else ""
        x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        context = adata.obs[spec.context_key].astype(str).to_numpy()
        condition = adata.obs[spec.condition_key].astype(str).to_numpy()
        control = condition == str(spec.control_value)
        perturbations = tuple(sorted(set(condition[~control])))
        contexts = np.array(sorted(c for c in set(context)
                                   if (control & (context == c)).sum() >= min_cells))
        if not perturbations or not len(contexts):
            raise DataValidationError(
                f"{where}need control and perturbed cells: found perturbations "
                f"{list(perturbations)} and {len(contexts)} contexts with >= {min_cells} "
                f"control cells in obs '{spec.context_key}'")

        blocks, start = [], 0
        control_start, control_count = [], []
        for c in contexts:
            members = np.flatnonzero(control & (context == c))
            blocks.append(members)
            control_start.append(start)
            control_count.append(len(members))
            start += len(members)
        rows = []
        for ci, c in enumerate(contexts):
            for pi, p in enumerate(perturbations):
                members = np.flatnonzero((condition == p) & (context == c))
                if len(members) >= min_cells:
                    rows.append((ci, pi, start, len(members)))
                    blocks.append(members)
                    start += len(members)
        if not rows:
            raise DataValidationError(f"{where}no context has >= {min_cells} cells under any "
                                      f"perturbation in obs '{spec.condition_key}'")
        cells = x[np.concatenate(blocks)].astype(np.float32)
        row_context, row_perturbation, treated_start, treated_count = (
            np.array(column) for column in zip(*rows, strict=True))
        control_start, control_count = np.array(control_start), np.array(control_count)
        control_means = np.stack([cells[s: s + n].mean(0)
                                  for s, n in zip(control_start, control_count, strict=True)])
        treated_means = np.stack([cells[s: s + n].mean(0)
                                  for s, n in zip(treated_start, treated_count, strict=True)])
        return cls(
            cells=cells, genes=adata.var_names.to_numpy(), contexts=contexts,
            perturbations=perturbations, row_context=row_context,
            row_perturbation=row_perturbation, control_start=control_start,
            control_count=control_count, treated_start=treated_start,
            treated_count=treated_count, control_means=control_means,
            targets=treated_means - control_means[row_context],
        )

    @property
    def n_rows(self) -> int:
        return len(self.row_context)

    def control_cells(self) -> np.ndarray:
        """Every context's control cells (the leading blocks of `cells`)."""
        return self.cells[: self.control_start[-1] + self.control_count[-1]]

    def input_standardisation(self, floor: float = 0.1) -> BagBatch:
        """Per-gene mean and standard deviation (at least `floor`) of the control cells: the
        inputs a model reads at prediction time, never a target."""
        control = self.control_cells()
        return BagBatch(gene_mean=control.mean(0),
                        gene_scale=np.maximum(control.std(0), floor).astype(np.float32))

    def one_hot(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The perturbation one-hot of the given rows."""
        return np.eye(len(self.perturbations), dtype=np.float32)[self.row_perturbation[rows]]

    def table(self) -> BagBatch:
        """The per-row arrays the training loop batches over."""
        return BagBatch(
            perturbation=self.one_hot(),
            control_start=self.control_start[self.row_context].astype(np.int32),
            control_count=self.control_count[self.row_context].astype(np.int32),
            treated_start=self.treated_start.astype(np.int32),
            treated_count=self.treated_count.astype(np.int32),
            target=self.targets.astype(np.float32),
        )

    def full_bags(self, rows: np.ndarray) -> BagBatch:
        """Every control cell of each row's context, padded to one size with a mask: the
        input for prediction (the whole population rather than a bootstrap)."""
        rows = np.asarray(rows)
        counts = self.control_count[self.row_context[rows]]
        starts = self.control_start[self.row_context[rows]]
        size = int(counts.max())
        offsets = np.arange(size)[None, :]
        mask = offsets < counts[:, None]
        index = np.where(mask, starts[:, None] + offsets, 0)
        return BagBatch(bag=self.cells[index], mask=mask, perturbation=self.one_hot(rows))
