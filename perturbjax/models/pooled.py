"""Several training pools of one data set trained as one program, each pool a fold.

A leave-one-context-out table trains a model once per held-out context, each time on its
own pool of the same cells. Here the pools become `Folds` of one table of their union, so
the whole table is one compiled program whose members are (pool, seed, learning rate), and
is sharded over devices like any members axis. Each fold is given exactly what
`fit_on_anndata` / `fit_on_pairs` would give its pool alone: the pool's own validation split,
its own optimal-transport pairs in its own PCA, its own unpaired table, its own number of
steps per epoch and its own early stop (`Folds.ragged`). Only float rounding differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import jax.numpy as jnp
import numpy as np
import pandas as pd

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import stratified_validation_mask
from perturbjax.models.fitting import (
    CellBatch,
    ConditionEncoding,
    batch_of,
    context_codes,
    pair_tables,
    shared_cells,
)
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult, Folds, TrainConfig, fit
from perturbjax.train.objective import Objective


@dataclasses.dataclass(frozen=True)
class PooledCells:
    """The union of several pools of one data set, each cell once, and each pool's cells as
    rows of the union, in the pool's own order."""

    union: ad.AnnData
    rows: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, pools: Sequence[ad.AnnData], spec: PerturbationSpec) -> PooledCells:
        """Refuses pools that are not subsets of one data set on the same genes and
        contexts (cells are matched by `obs_names`)."""
        if not pools:
            raise ValueError("pooled training needs at least one pool")
        genes = pools[0].var_names
        for i, pool in enumerate(pools):
            if not pool.var_names.equals(genes):
                raise ValueError(f"pool {i} has other genes than pool 0: one program needs "
                                 "the same genes in every pool (genes chosen per pool, e.g. "
                                 "by --n_top_genes, need one program per context)")
            if not pool.obs_names.is_unique:
                raise ValueError(f"pool {i} repeats cell names (obs_names): cells of "
                                 "several pools are matched by name")
        parts, seen = [], pd.Index([])
        for pool in pools:
            new = ~pool.obs_names.isin(seen)
            parts.append(pool[new])
            seen = seen.append(pool.obs_names[new])
        union = ad.concat(parts, merge="same") if len(parts) > 1 else parts[0].copy()
        contexts = sorted(union.obs[spec.context_key].astype(str).unique())
        for i, pool in enumerate(pools):
            if sorted(pool.obs[spec.context_key].astype(str).unique()) != contexts:
                raise ValueError(f"pool {i} lacks some of the contexts {contexts}: its "
                                 "context codes would differ from the other pools'")
        return cls(union, tuple(union.obs_names.get_indexer(p.obs_names) for p in pools))


def _stacked(tables: Sequence[CellBatch]) -> tuple[CellBatch, list[np.ndarray]]:
    """One table of every fold's rows, and each fold's rows of it."""
    sizes = [len(t["condition"]) for t in tables]
    offsets = np.cumsum([0, *sizes])
    stacked = CellBatch(**{k: jnp.concatenate([t[k] for t in tables]) for k in tables[0]})
    return stacked, [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _in_union(table: CellBatch, rows: np.ndarray, union_contexts: np.ndarray) -> CellBatch:
    """A pair table of a pool with its rows (and its rows' context codes) moved to the
    union's."""
    moved = {k: rows[np.asarray(table[k])] for k in ("source_row", "target_row") if k in table}
    if "context" in table:
        moved["context"] = union_contexts[moved["source_row"]]
    return CellBatch(**{**table, **{k: jnp.asarray(v, jnp.int32) for k, v in moved.items()}})


def fit_pools(objective: Objective, train_config: TrainConfig, pools: Sequence[ad.AnnData],
              spec: PerturbationSpec, encoding: ConditionEncoding, seeds: Sequence[int],
              pairs: bool = False, pairing: PairingConfig | None = None,
              unpaired: bool = False, self_pairs: bool = True,
              workdir: str | Path | None = None, validation_seed: int = 0,
              fingerprint: dict | None = None, warm_start: FitResult | None = None
              ) -> FitResult:
    """Every pool x seed as one program: fold f is what `fit_on_anndata` (or, with `pairs`
    or `unpaired`, `fit_on_pairs`) would train on `pools[f]`, with the same arguments.
    `warm_start` is an earlier result of the same pools. Use `FitResult.fold(f)` for a
    pool's members."""
    pooled = PooledCells.of(pools, spec)
    if pairs or unpaired:
        tables = [pair_tables(pool, spec, encoding, train_config, pairing, validation_seed,
                              unpaired, self_pairs) for pool in pools]
        union_contexts = context_codes(pooled.union, spec)
        (train, train_rows), (validation, val_rows) = (
            _stacked([_in_union(t[part], rows, union_contexts)
                      for t, rows in zip(tables, pooled.rows, strict=True)])
            for part in (0, 1))
        shared = shared_cells(pooled.union, spec)
    else:
        union = pooled.union
        train = validation = batch_of(union, encoding.codes(union, spec),
                                      context_codes(union, spec))
        masks = [stratified_validation_mask(pool, spec, train_config.validation_fraction,
                                            validation_seed) for pool in pools]
        train_rows = [rows[~val] for rows, val in zip(pooled.rows, masks, strict=True)]
        val_rows = [rows[val] for rows, val in zip(pooled.rows, masks, strict=True)]
        shared = None
    return fit(objective, train, validation, seeds, train_config, workdir=workdir,
               fingerprint=fingerprint, shared=shared, warm_start=warm_start,
               folds=Folds.ragged(train_rows, val_rows))
