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
    CONTROL_MEAN,
    CellBatch,
    ConditionEncoding,
    batch_of,
    context_codes,
    pair_table,
    pairing_coordinates,
    shared_cells,
)
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult, Folds, TrainConfig, fit
from perturbjax.train.objective import ROW_WEIGHT, Batch, Objective, PyTree

# Per-fold arrays the validation loss reads (leading axes: fold, then condition code).
GENES = "inner_genes"  # (codes, N_DEGS) int: the real top DEGs of the inner context
GENE_WEIGHT = "inner_gene_weight"  # (codes, N_DEGS): 1 on a real DEG, 0 on padding
RESPONSE = "inner_response"  # (codes, N_DEGS): the real response on those genes
CONDITION_WEIGHT = "inner_condition_weight"  # (codes,): 1 where the context has that condition
EFFECT = "inner_effect"  # (codes, N_DEGS): the real standardised effect on those genes
CONTROL_VARIANCE = "inner_control_variance"  # (genes,): the inner context's control variance


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
              EFFECT: np.zeros((len(contexts), n_codes, N_DEGS), np.float32),
              CONTROL_MEAN: np.zeros((len(contexts), x.shape[1]), np.float32),
              CONTROL_VARIANCE: np.zeros((len(contexts), x.shape[1]), np.float32),
              CONDITION_WEIGHT: np.zeros((len(contexts), n_codes), np.float32)}
    start = 0
    for f, name in enumerate(contexts):
        held = hold_out_mask(cells, spec, [name])
        train_rows.append(np.flatnonzero(~held[target_rows]))
        sources = x[(context == name) & control]
        arrays[CONTROL_MEAN][f] = sources.mean(axis=0)
        arrays[CONTROL_VARIANCE][f] = sources.var(axis=0)
        for label in sorted(set(labels[held])):
            code = encoding.code(label)
            real = x[held & (labels == label)]
            truth = ResponseTruth.build(sources, real, genes)
            top = truth.top(N_DEGS)
            arrays[GENES][f, code, : len(top)] = top
            arrays[GENE_WEIGHT][f, code, : len(top)] = 1.0
            arrays[RESPONSE][f, code, : len(top)] = truth.response[top]
            arrays[EFFECT][f, code, : len(top)] = standardised_effect(
                real.mean(0)[top], real.var(0)[top], sources.mean(0)[top],
                sources.var(0)[top])
            arrays[CONDITION_WEIGHT][f, code] = 1.0
            inputs.append(sources)
            codes.append(np.full(len(sources), code, np.int32))
        end = sum(map(len, codes))
        validation_rows.append(np.arange(start, end))
        start = end
    validation = CellBatch(x=jnp.asarray(np.concatenate(inputs)),
                           condition=jnp.asarray(np.concatenate(codes)))
    return Folds.ragged(train_rows, validation_rows, arrays, select_together=True), validation


def standardised_effect(mean: jax.Array, variance: jax.Array, control_mean: jax.Array,
                        control_variance: jax.Array) -> jax.Array:
    """(mean - control mean) / the pooled standard deviation: the effect size a rank test
    of perturbed against control cells reads, so it tracks DEG recovery, where the mean
    response alone does not see the spread of the predicted cells."""
    return (mean - control_mean) / jnp.sqrt(0.5 * (variance + control_variance) + 1e-6)


def _per_condition(prediction: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) of the predicted cells per condition code, on the fold's top DEGs
    (padded rows weigh nothing)."""
    rows = batch.get(ROW_WEIGHT, jnp.ones(prediction.shape[0], prediction.dtype))
    n_codes = batch[CONDITION_WEIGHT].shape[0]
    member = jax.nn.one_hot(batch["condition"], n_codes, dtype=prediction.dtype) * rows[:, None]
    count = jnp.maximum(member.sum(axis=0), 1.0)[:, None]
    mean = member.T @ prediction / count
    variance = member.T @ prediction**2 / count - mean**2

    def on_genes(v: jax.Array) -> jax.Array:
        return jnp.take_along_axis(v, batch[GENES], axis=1)

    return on_genes(mean), jnp.maximum(on_genes(variance), 0.0)


def _weighted_agreement(a: jax.Array, b: jax.Array, w: jax.Array, concordance: bool
                        ) -> jax.Array:
    """Per condition: the Pearson correlation of a and b over the genes of weight w, or,
    with `concordance`, Lin's concordance correlation (which also penalises a scale or
    offset between them)."""
    total = jnp.maximum(w.sum(1, keepdims=True), 1.0)
    mean_a, mean_b = (w * a).sum(1, keepdims=True) / total, (w * b).sum(1, keepdims=True) / total
    ca, cb = (a - mean_a) * w, (b - mean_b) * w
    covariance, var_a, var_b = (ca * cb).sum(1), (ca * ca).sum(1), (cb * cb).sum(1)
    if concordance:
        n = total[:, 0]
        norm = var_a / n + var_b / n + (mean_a - mean_b)[:, 0] ** 2
        return jnp.where(norm > 0, 2 * covariance / n / jnp.where(norm > 0, norm, 1.0), 0.0)
    norm = jnp.sqrt(var_a * var_b)
    return jnp.where(norm > 0, covariance / jnp.where(norm > 0, norm, 1.0), 0.0)


def _over_conditions(values: jax.Array, batch: Batch) -> jax.Array:
    weight = batch[CONDITION_WEIGHT]
    return (weight * values).sum() / weight.sum()


def response_loss(prediction: jax.Array, batch: Batch) -> jax.Array:
    """1 - pearson_delta_top100 of a fold's validation prediction, averaged over the inner
    context's perturbed conditions: per condition, the mean predicted cell minus the
    control mean, against the real response on the real top DEGs (padded rows and genes
    weigh nothing)."""
    mean, _ = _per_condition(prediction, batch)
    control = jnp.take_along_axis(jnp.broadcast_to(batch[CONTROL_MEAN], (
        mean.shape[0], batch[CONTROL_MEAN].shape[-1])), batch[GENES], axis=1)
    pearson = _weighted_agreement(mean - control, batch[RESPONSE], batch[GENE_WEIGHT], False)
    return 1.0 - _over_conditions(pearson, batch)


def effect_loss(prediction: jax.Array, batch: Batch) -> jax.Array:
    """1 - the concordance of the predicted and real standardised effects
    (`standardised_effect`) on the real top DEGs, averaged over the conditions: low only when
    the predicted cells are shifted by the right amount relative to their spread."""
    mean, variance = _per_condition(prediction, batch)

    def control(key: str) -> jax.Array:
        values = jnp.broadcast_to(batch[key], (mean.shape[0], batch[key].shape[-1]))
        return jnp.take_along_axis(values, batch[GENES], axis=1)

    effect = standardised_effect(mean, variance, control(CONTROL_MEAN),
                                 control(CONTROL_VARIANCE))
    concordance = _weighted_agreement(effect, batch[EFFECT], batch[GENE_WEIGHT], True)
    return 1.0 - _over_conditions(concordance, batch)


def response_selection(objective: Objective, params: PyTree, model_state: PyTree,
                       batch: Batch) -> jax.Array:
    """The selection score "response": `response_loss` of the model's prediction of the
    fold's validation rows."""
    return response_loss(objective.predict(params, model_state, batch), batch)


def response_and_effect_selection(objective: Objective, params: PyTree, model_state: PyTree,
                                  batch: Batch) -> jax.Array:
    """The selection score "response_and_effect": the mean of `response_loss` and
    `effect_loss`, so that the chosen epoch predicts both the mean response and how far
    the cells move relative to their spread."""
    prediction = objective.predict(params, model_state, batch)
    return 0.5 * (response_loss(prediction, batch) + effect_loss(prediction, batch))


SELECTIONS = {"response": response_selection,
              "response_and_effect": response_and_effect_selection}


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
        shared = shared_cells(train, spec)
    folds, validation = inner_folds(train, spec, encoding, targets, contexts)
    selection = SELECTIONS[train_config.selection_score]
    return fit(dataclasses.replace(objective, selection=selection), table, validation,
               seeds, train_config, workdir=workdir,
               fingerprint={**(fingerprint or {}), "inner_contexts": contexts},
               shared=shared, folds=folds, warm_start=warm_start)
