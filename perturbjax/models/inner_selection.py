"""Model selection on the task: training contexts held out inside the pool, as folds.

Validation reconstruction does not track how well a model predicts a context it never saw
perturbed. Here a few training contexts ("inner" contexts, never the outer held-out one) each
become a fold of the same compiled program: fold f trains on every row of the pool except
those whose target is a perturbed cell of inner context f, and is validated by predicting
that context's perturbed cells from its control cells. The validation loss is
1 - pearson_delta_top100 (`perturbjax.metrics.response`; the mean over the context's
perturbed conditions), computed on the device. The folds select together
(`Folds.select_together`): each (seed, learning rate) keeps the epoch, and each seed the
rate, whose score averaged over the inner contexts is best, and each seed predicts with the
mean of its folds' members. The cost is one member per inner context instead of one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import hold_out_mask, is_control
from perturbjax.metrics.response import N_DEGS, ResponseTruth
from perturbjax.models.fitting import (
    CellBatch,
    ConditionEncoding,
    batch_of,
    context_codes,
    pair_table,
    pairing_coordinates,
)
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult, Folds, TrainConfig, fit
from perturbjax.train.objective import ROW_WEIGHT, Batch, Objective, PyTree

# Per-fold arrays the validation loss reads (leading axes: fold, then condition code).
GENES = "inner_genes"  # (codes, N_DEGS) int: the real top DEGs of the inner context
GENE_WEIGHT = "inner_gene_weight"  # (codes, N_DEGS): 1 on a real DEG, 0 on padding
RESPONSE = "inner_response"  # (codes, N_DEGS): the real response on those genes
CONTROL_MEAN = "inner_control_mean"  # (genes,): the inner context's control mean
CONDITION_WEIGHT = "inner_condition_weight"  # (codes,): 1 where the context has that condition


def choose_inner_contexts(cells: ad.AnnData, spec: PerturbationSpec, n: int) -> list[str]:
    """The `n` training contexts with control and perturbed cells whose smaller side is
    largest (the most reliable scores; ties by name); none when fewer than two such
    contexts exist, since every fold must still train on some context's perturbed cells."""
    context = cells.obs[spec.context_key].astype(str).to_numpy()
    control = is_control(cells, spec)
    sizes = {c: min((control & (context == c)).sum(), (~control & (context == c)).sum())
             for c in sorted(set(context))}
    eligible = sorted((c for c, size in sizes.items() if size > 0),
                      key=lambda c: (-sizes[c], c))
    return eligible[:n] if len(eligible) >= 2 else []


def inner_folds(cells: ad.AnnData, spec: PerturbationSpec, encoding: ConditionEncoding,
                target_rows: np.ndarray, contexts: Sequence[str]) -> tuple[Folds, CellBatch]:
    """(folds, validation table) for training rows whose targets are `target_rows` of
    `cells`: fold f leaves out the rows targeting a perturbed cell of `contexts[f]`; its
    validation rows are that context's control cells under each of its perturbed conditions,
    and its arrays hold the real response to score them against (see the module names)."""
    labels = cells.obs[spec.condition_key].astype(str).to_numpy()
    context = cells.obs[spec.context_key].astype(str).to_numpy()
    control = is_control(cells, spec)
    x = np.asarray(cells.X, np.float32)
    genes = np.asarray(cells.var_names).astype(str)
    n_codes = len(encoding.labels)
    train_rows, validation_rows, inputs, codes = [], [], [], []
    arrays = {GENES: np.zeros((len(contexts), n_codes, N_DEGS), np.int32),
              GENE_WEIGHT: np.zeros((len(contexts), n_codes, N_DEGS), np.float32),
              RESPONSE: np.zeros((len(contexts), n_codes, N_DEGS), np.float32),
              CONTROL_MEAN: np.zeros((len(contexts), x.shape[1]), np.float32),
              CONDITION_WEIGHT: np.zeros((len(contexts), n_codes), np.float32)}
    start = 0
    for f, name in enumerate(contexts):
        held = hold_out_mask(cells, spec, [name])
        train_rows.append(np.flatnonzero(~held[target_rows]))
        sources = x[(context == name) & control]
        arrays[CONTROL_MEAN][f] = sources.mean(axis=0)
        for label in sorted(set(labels[held])):
            code = encoding.code(label)
            truth = ResponseTruth.build(sources, x[held & (labels == label)], genes)
            top = truth.top(N_DEGS)
            arrays[GENES][f, code, : len(top)] = top
            arrays[GENE_WEIGHT][f, code, : len(top)] = 1.0
            arrays[RESPONSE][f, code, : len(top)] = truth.response[top]
            arrays[CONDITION_WEIGHT][f, code] = 1.0
            inputs.append(sources)
            codes.append(np.full(len(sources), code, np.int32))
        end = sum(map(len, codes))
        validation_rows.append(np.arange(start, end))
        start = end
    validation = CellBatch(x=jnp.asarray(np.concatenate(inputs)),
                           condition=jnp.asarray(np.concatenate(codes)))
    return Folds.ragged(train_rows, validation_rows, arrays, select_together=True), validation


def response_loss(prediction: jax.Array, batch: Batch) -> jax.Array:
    """1 - pearson_delta_top100 of a fold's validation prediction, averaged over the inner
    context's perturbed conditions: per condition, the mean predicted cell minus the
    control mean, against the real response on the real top DEGs (padded rows and genes
    weigh nothing)."""
    rows = batch.get(ROW_WEIGHT, jnp.ones(prediction.shape[0], prediction.dtype))
    n_codes = batch[CONDITION_WEIGHT].shape[0]
    member = jax.nn.one_hot(batch["condition"], n_codes, dtype=prediction.dtype) * rows[:, None]
    mean = member.T @ prediction / jnp.maximum(member.sum(axis=0), 1.0)[:, None]
    predicted = jnp.take_along_axis(mean - batch[CONTROL_MEAN], batch[GENES], axis=1)
    w = batch[GENE_WEIGHT]

    def centred(v: jax.Array) -> jax.Array:
        return (v - (w * v).sum(1, keepdims=True) / jnp.maximum(w.sum(1, keepdims=True), 1.0)
                ) * w

    a, b = centred(predicted), centred(batch[RESPONSE])
    norm = jnp.sqrt((a * a).sum(1) * (b * b).sum(1))
    pearson = jnp.where(norm > 0, (a * b).sum(1) / jnp.where(norm > 0, norm, 1.0), 0.0)
    weight = batch[CONDITION_WEIGHT]
    return 1.0 - (weight * pearson).sum() / weight.sum()


def response_selection(objective: Objective, params: PyTree, model_state: PyTree,
                       batch: Batch) -> jax.Array:
    """The selection score supplied to a model selected on inner contexts: `response_loss`
    of its prediction of the fold's validation rows."""
    return response_loss(objective.predict(params, model_state, batch), batch)


def fit_on_inner_hold_outs(objective: Objective, train_config: TrainConfig, train: ad.AnnData,
                           spec: PerturbationSpec, encoding: ConditionEncoding,
                           seeds: Sequence[int], pairing: PairingConfig | None = None,
                           workdir: str | Path | None = None, fingerprint: dict | None = None,
                           warm_start: FitResult | None = None, self_pairs: bool = True
                           ) -> FitResult:
    """Train on every cell of `train` (no validation split), one fold per inner context of
    `train_config.inner_contexts`, selected on their responses (module docstring). With
    `pairing`, the rows are `pair_table`s in a PCA of `train` (as `fit_on_pairs`); without,
    each cell is its own target (as `fit_on_anndata`)."""
    contexts = choose_inner_contexts(train, spec, train_config.inner_contexts)
    if not contexts:
        raise ValueError("selection on inner held-out contexts needs at least 2 training "
                         "contexts with control and perturbed cells")
    shared = None
    if pairing is None:
        table = batch_of(train, encoding.codes(train, spec), context_codes(train, spec))
        targets = np.arange(train.n_obs)
    else:
        table = pair_table(np.arange(train.n_obs), pairing_coordinates(train), train, spec,
                           encoding, pairing, self_pairs=self_pairs)
        targets = np.asarray(table["target_row"])
        shared = CellBatch(cells=jnp.asarray(np.asarray(train.X, np.float32)))
    folds, validation = inner_folds(train, spec, encoding, targets, contexts)
    return fit(dataclasses.replace(objective, selection=response_selection), table, validation,
               seeds, train_config, workdir=workdir,
               fingerprint={**(fingerprint or {}), "inner_contexts": contexts},
               shared=shared, folds=folds, warm_start=warm_start)
