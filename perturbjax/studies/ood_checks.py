"""Everything the OOD benchmark can check before it trains, each problem stated on its own.

`config_problems` reads only the configuration (milliseconds, before the data loads);
`data_problems` reads the loaded data against the protocol: every held-out context must have
control cells to predict from and perturbed cells to score against (enough of each for the
DEG test), every training pool must hold each condition that is scored (or no model would
have seen it) and at least one batch of every learned model, and `counts` data must hold raw
counts. The study raises one `RunValidationError` listing all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np

from perturbjax.data.schema import PerturbationSpec, non_count_example
from perturbjax.data.splits import stratified_validation_mask
from perturbjax.errors import seed_problem
from perturbjax.models import Batching

MIN_GROUP = 2  # scanpy's DEG tests need at least two cells in each group they compare


def config_problems(seeds: Sequence[int], epochs: int | None, n_top_genes: int | None,
                    checkpoint_every: int, workdir: Path) -> list[str]:
    """Problems with the run's settings alone."""
    problems = [p for p in [seed_problem("seeds", seeds)] if p]
    if epochs is not None and epochs < 1:
        problems.append(f"epochs: {epochs}; expected a positive number of epochs")
    if n_top_genes is not None and n_top_genes < 1:
        problems.append(f"n_top_genes: {n_top_genes}; expected a positive number of genes "
                        "(or none to keep every gene)")
    if checkpoint_every < 0:
        problems.append(f"checkpoint_every: {checkpoint_every}; expected 0 (no checkpoints) "
                        "or a positive number of epochs")
    if workdir.exists() and not workdir.is_dir():
        problems.append(f"workdir {workdir} is a file; expected a folder")
    return problems


def data_problems(adata: ad.AnnData, spec: PerturbationSpec, contexts: Sequence[str],
                  held_out_conditions: Sequence[str], counts: bool,
                  batching: dict[str, Batching], source: str) -> list[str]:
    """Problems of the data for this protocol, every held-out context and training pool."""
    problems = []
    if counts:
        example = non_count_example(adata.X)
        if example is not None:
            problems.append(f"{source}: counts=True (--counts: X holds raw counts), but X "
                            f"holds values that are not non-negative integers (e.g. "
                            f"{example:g}); it looks normalised already, so leave counts out")
    condition = adata.obs[spec.condition_key].astype(str).to_numpy()
    context = adata.obs[spec.context_key].astype(str).to_numpy()
    control = condition == str(spec.control_value)
    never_seen = np.isin(condition, list(held_out_conditions))
    for name in contexts:
        here = context == name
        where = f"held-out context '{name}' (obs '{spec.context_key}')"
        n_control = int((here & control).sum())
        if n_control < MIN_GROUP:
            problems.append(f"{where}: {n_control} control cell(s); need at least "
                            f"{MIN_GROUP} to predict from and to test DEGs against")
        scored, sizes = np.unique(condition[here & ~control], return_counts=True)
        if not scored.size:
            problems.append(f"{where}: no perturbed cells (obs '{spec.condition_key}' other "
                            f"than '{spec.control_value}') to score predictions against")
        for label, size in zip(scored, sizes, strict=True):
            if size < MIN_GROUP:
                problems.append(f"{where}, condition '{label}': {size} cell; need at least "
                                f"{MIN_GROUP} for the DEG test")
        pool = ~(here & ~control) & ~never_seen
        seen = set(condition[pool])
        for label in scored:
            if label not in held_out_conditions and label not in seen:
                problems.append(f"{where}: the training pool has no cell of condition "
                                f"'{label}' (no other context has one), so no model would "
                                "have seen it")
        for model, how in batching.items():
            subsets = ([pool & (control | (condition == label)) for label in scored
                        if label not in held_out_conditions] if how.per_condition else [pool])
            for subset in subsets:
                val = stratified_validation_mask(adata[subset], spec, how.validation_fraction,
                                                 0)
                trained = control[subset][~val]
                n_rows, unit = len(trained), "cells"
                if how.unpaired:
                    n_rows = max(int(trained.sum()), int((~trained).sum()))
                    unit = "rows (the larger of its control and perturbed cells)"
                if n_rows < how.batch_size:
                    problems.append(f"{where}: model '{model}' would train on {n_rows} "
                                    f"{unit} after its validation split, fewer than one "
                                    f"batch of {how.batch_size}")
                    break
    return problems
