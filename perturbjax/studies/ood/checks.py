"""Everything the OOD benchmark can check before it trains, each problem stated on its own.

`config_problems` reads only the configuration (milliseconds, before the data loads);
`data_problems` reads the loaded data against the protocol: every held-out context must have
control cells to predict from and perturbed cells to score against (enough of each for the
DEG test), every training pool must hold each condition that is scored (or no model would
have seen it) and whatever each model needs of it (`Model.pool_problems`: e.g. a batch), and
`counts` data must hold raw counts. `check_run` raises one `RunValidationError` listing all of
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np

from perturbjax.data import normalize_log1p
from perturbjax.data.schema import PerturbationSpec, log_normalised_problem, non_count_example
from perturbjax.data.splits import hold_out_mask
from perturbjax.errors import RunValidationError, seed_problem
from perturbjax.models import FitSettings, check_model_names, get_model
from perturbjax.models.registry import Model
from perturbjax.studies.ood.config import OODConfig, fit_settings
from perturbjax.studies.ood.data import load_data

MIN_GROUP = 2  # scanpy's DEG tests need at least two cells in each group they compare
# The response metrics correlate and rank genes: with fewer, every Pearson is ±1 or 0 (a
# constant vector) and the DEG overlaps are whole lists: numbers that look like scores.
MIN_GENES = 10


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
                  models: dict[str, Model], settings: FitSettings, source: str) -> list[str]:
    """Problems of the data for this protocol, every held-out context and training pool."""
    problems = []
    if adata.n_vars < MIN_GENES:
        problems.append(f"{source}: X has {adata.n_vars} gene(s); the response metrics "
                        f"correlate and rank genes and need at least {MIN_GENES}")
    problem = None if counts else log_normalised_problem(adata.X)
    if problem:
        problems.append(f"{source}: {problem}; or pass counts=True (--counts) to have raw "
                        "counts normalised here")
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
    problems += held_out_condition_problems(condition[~control & ~never_seen],
                                            held_out_conditions, spec)
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
        pool = ~hold_out_mask(adata, spec, [name]) & ~never_seen
        seen = set(condition[pool])
        for label in scored:
            if label not in held_out_conditions and label not in seen:
                problems.append(f"{where}: the training pool has no cell of condition "
                                f"'{label}' (no other context has one), so no model would "
                                "have seen it")
        conditions = [label for label in scored if label not in held_out_conditions]
        pool_cells = adata[pool]
        for model in models.values():
            problems += [f"{where}: {problem}" for problem in
                         model.pool_problems(pool_cells, spec, conditions, settings)]
    return problems


def check_run(config: OODConfig, workdir: Path) -> tuple[ad.AnnData, list[str]]:
    """The validation pass: every problem of the settings (before the data loads), then of
    the data, raised together as one `RunValidationError`. Returns the data, log-normalised,
    and the contexts to hold out."""
    problems = config_problems(config.seeds, config.epochs, config.n_top_genes,
                               config.checkpoint_every, workdir)
    if config.one_program and config.n_top_genes:
        problems.append("one_program needs the same genes in every training pool; "
                        "n_top_genes chooses them per pool: train context by context")
    try:
        check_model_names(config.models)
    except ValueError as error:
        problems.append(str(error))
    if not problems:  # the models resolve only with valid settings
        for model in config.models:
            problems += get_model(model).settings_problems(fit_settings(config),
                                                           config.one_program)
    if problems:
        raise RunValidationError("the run's settings", problems)
    adata = load_data(config)
    spec = config.spec
    contexts = list(config.held_out) or sorted(adata.obs[spec.context_key].astype(str).unique())
    raw_counts = config.counts and config.design == "single"
    problems = data_problems(adata, spec, contexts, config.held_out_conditions, raw_counts,
                             {m: get_model(m) for m in config.models}, fit_settings(config),
                             source=config.data)
    if problems:
        raise RunValidationError(f"data '{config.data}'", problems)
    return (normalize_log1p(adata) if raw_counts else adata), contexts


def held_out_condition_problems(seen: np.ndarray, held_out_conditions: Sequence[str],
                                spec: PerturbationSpec) -> list[str]:
    """Conditions never seen in training are predicted from the nearest seen dose: they must
    be dose labels, and some perturbed dose must stay in training."""
    if not held_out_conditions:
        return []
    problems = []
    for label in held_out_conditions:
        try:
            float(label)
        except ValueError:
            problems.append(f"held_out_conditions: '{label}' is not a dose; a held-out "
                            "condition is a dose never seen in training (the multi-dose "
                            "design), predicted from the nearest seen dose")
    if not len(seen):
        problems.append(f"held_out_conditions {list(held_out_conditions)} leave no perturbed "
                        f"condition (obs '{spec.condition_key}') in training to predict from")
    return problems
