"""The PerturbX study's folds: cell lines held out, stratified by their status."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
from sklearn.model_selection import StratifiedKFold

from perturbjax.data.bags import BagData
from perturbjax.data.mixseq import MIXSEQ_SPEC
from perturbjax.errors import PerturbjaxError
from perturbjax.studies.perturbx.config import DEFAULT_FOLDS

logger = logging.getLogger("perturbjax")


class FoldCountError(PerturbjaxError):
    """The folds asked for cannot each hold out a line of every status class."""


def line_status(adata: ad.AnnData, bags: BagData, key: str) -> np.ndarray:
    """The boolean status of each context of `bags`, checked to be constant within a line."""
    if key not in adata.obs.columns:
        raise ValueError(f"obs column '{key}' (the per-line status that stratifies the folds) "
                         f"is missing; columns: {sorted(map(str, adata.obs.columns))}")
    per_line = adata.obs.groupby(MIXSEQ_SPEC.context_key, observed=True)[key].agg(
        ["min", "max"])
    mixed = per_line.index[per_line["min"] != per_line["max"]].tolist()
    if mixed:
        raise ValueError(f"obs '{key}' varies within cell lines {mixed[:5]}; expected one "
                         "status per line")
    return per_line.loc[bags.contexts, "min"].to_numpy(bool)


def fold_count(status: np.ndarray, requested: int | None, key: str = "status") -> int:
    """The number of stratified folds: `requested`, or by default `DEFAULT_FOLDS` capped at
    the smaller status class. Raises FoldCountError, naming the class sizes, when a class has
    fewer lines than the folds need (each fold holds out a line of every class)."""
    values, sizes = np.unique(status, return_counts=True)
    classes = ", ".join(f"{n} lines with {key}={v}" for v, n in zip(values, sizes, strict=True))
    if len(values) < 2 or sizes.min() < 2:
        raise FoldCountError(f"stratified folds need at least 2 lines of each of two status "
                             f"classes; the data has {classes}")
    n_folds = min(DEFAULT_FOLDS, int(sizes.min())) if requested is None else requested
    if n_folds > sizes.min():
        raise FoldCountError(f"{n_folds} folds need at least {n_folds} lines of each status "
                             f"class, but the data has {classes}; ask for at most "
                             f"{sizes.min()} folds")
    return n_folds


def make_folds(status: np.ndarray, n_folds: int | None, seed: int, key: str = "status"
               ) -> list[np.ndarray]:
    """Test contexts of each fold, stratified by status; `n_folds` as `fold_count` allows."""
    splitter = StratifiedKFold(n_splits=fold_count(status, n_folds, key), shuffle=True,
                               random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(status)), status)]


def fold_rows(bags: BagData, test_contexts: list[np.ndarray], seed: int) -> np.ndarray:
    """(folds, rows) training rows; smaller folds repeat random rows of their own to reach
    the largest (one compiled program needs one size)."""
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(~np.isin(bags.row_context, test)) for test in test_contexts]
    size = max(len(r) for r in rows)
    if any(len(r) < size for r in rows):
        logger.warning("folds differ in size; smaller folds repeat rows up to %d", size)
    return np.stack([np.concatenate([r, rng.choice(r, size - len(r))]) for r in rows])


def gene_weights(bags: BagData, train_rows: np.ndarray, kind: str) -> np.ndarray:
    """(folds, genes) loss weights, each from its own fold's training rows only."""
    if kind == "uniform":
        return np.ones((len(train_rows), len(bags.genes)), np.float32)
    weights = np.abs(bags.targets[train_rows]).mean(axis=1)
    return (weights / weights.mean(axis=1, keepdims=True)).astype(np.float32)
