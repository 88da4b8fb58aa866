"""The PerturbX study: cross-validated prediction of a drug's mean effect on unseen cell lines.

`run(adata, config, workdir)` takes log-normalised cells with obs `cell_line`, `condition`
(control `DMSO`) and a per-line boolean status column (TP53 wild-type), and:
1. splits the lines into `n_folds` folds stratified by status (the paper: 6 folds of 4; by
   default 6, or as many as the smaller status class has lines when it has fewer);
2. trains PerturbX for every fold x seed as ONE vmapped program of the shared loop (the cell
   pool is a shared array; each fold trains on its own rows, with its own gene weights);
3. predicts each held-out line from all its control cells, beside the references (mean
   effect, status-conditioned mean, nearest lines, ridge on pseudo-bulk);
4. scores R^2 / MSE on the top DEGs and MSE on all genes per held-out line, all / WT / MUT;
5. reads the aggregated latents: status silhouette, and a classifier trained on each fold's
   training lines predicting its held-out lines;
6. ranks genes: PCA of the aggregated latents of all lines, sampled Shapley values of
   X -> phi(X) . w1 over each model's selected genes, averaged over models;
and writes tables, figures and `summary.md`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import anndata as ad
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score

from perturbjax.data.bags import BagBatch, BagData
from perturbjax.data.mixseq import MIXSEQ_SPEC
from perturbjax.metrics.expression import mean_effect_scores, top_effect_genes
from perturbjax.models import effect_references as refs
from perturbjax.models import perturbx
from perturbjax.nn.concrete import CONVERGED, distinct_selection, mean_max_probability
from perturbjax.shapley import sampled_shapley
from perturbjax.studies.perturbx.config import PerturbXStudyConfig
from perturbjax.studies.perturbx.data import load_data
from perturbjax.studies.perturbx.folds import fold_rows, gene_weights, line_status, make_folds
from perturbjax.studies.perturbx.report import MODEL, summarise, write_results
from perturbjax.train import FitResult, Folds, TrainConfig, TrainState, fit, predict_members

logger = logging.getLogger("perturbjax")


def train_folds(bags: BagData, train_rows: np.ndarray, config: PerturbXStudyConfig
                ) -> tuple[perturbx.PerturbXObjective, FitResult]:
    """Every fold x seed trained as one program."""
    steps = config.epochs * (train_rows.shape[1] // config.batch_size)
    objective = perturbx.build(config.model, len(bags.genes), steps)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                               learning_rates=(config.learning_rate,), patience=None,
                               select_best=False, learning_rate_multipliers=(
                                   ("logits", config.selector_speed),))
    folds = Folds(train_rows, train_rows,
                  arrays={"gene_weights": gene_weights(bags, train_rows, config.gene_weights)})
    logger.info("training %d folds x %d seeds as one program: %d steps of %d bags of %d cells",
             len(train_rows), len(config.seeds), steps, config.batch_size,
             config.model.bag_size)
    table = bags.table()
    result = fit(objective, table, table, config.seeds, train_config,
                 shared=shared_arrays(bags, config), folds=folds,
                 on_epoch=lambda epoch, state: _log_every(epoch, state, config.epochs))
    return objective, result


def shared_arrays(bags: BagData, config: PerturbXStudyConfig) -> BagBatch:
    """What every step and every prediction sees whole: the cells (and the standardisation)."""
    return BagBatch(cells=bags.cells,
                    **(bags.input_standardisation() if config.standardise_inputs else {}))


def _log_every(epoch: int, state: TrainState, total: int) -> None:
    """A progress line every tenth of the run (the loop's default logs every epoch)."""
    if (epoch + 1) % max(1, total // 10) == 0:
        logger.info("epoch %d/%d  train loss %.4f  training-lines validation %.4f", epoch + 1,
                 total, float(np.mean(state.train_loss[:, epoch])),
                 float(np.mean(state.val_loss[:, epoch])))


def reference_predictions(bags: BagData, status: np.ndarray, train: np.ndarray,
                          test: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each reference's effects for the `test` rows, fitted on the `train` rows."""
    effects = bags.targets[train]
    profiles = bags.control_means[bags.row_context]
    return {
        "mean effect": refs.mean_effect(effects, len(test)),
        "status mean effect": refs.group_mean_effect(
            effects, status[bags.row_context[train]], status[bags.row_context[test]]),
        "nearest lines": refs.nearest_lines_effect(effects, profiles[train], profiles[test], k),
        "ridge": refs.ridge_effect(effects, profiles[train], profiles[test]),
    }


def score_rows(bags: BagData, status: np.ndarray, rows: np.ndarray, predicted: np.ndarray,
               top: np.ndarray, **labels) -> list[dict]:
    """One record per row: its line, status and the four scores."""
    records = []
    for row, effect in zip(rows, predicted, strict=True):
        context = bags.row_context[row]
        records.append({**labels, "line": bags.contexts[context],
                        "status": "WT" if status[context] else "MUT",
                        **mean_effect_scores(bags.control_means[context], bags.targets[row],
                                             effect, top)})
    return records


def latent_separation(latents: np.ndarray, status: np.ndarray, test_contexts: list[np.ndarray],
                      n_seeds: int, bags: BagData) -> pd.DataFrame:
    """Per seed: status silhouette of the aggregated latents (all lines, each fold's model,
    averaged), and the accuracy of a logistic regression trained on each fold's training
    lines' latents predicting its held-out lines (all held-out lines pooled)."""
    rows_status = status[bags.row_context]
    records = []
    for seed in range(n_seeds):
        silhouettes, correct = [], []
        for fold, test in enumerate(test_contexts):
            z = latents[fold * n_seeds + seed]
            z = (z - z.mean(0)) / (z.std(0) + 1e-8)
            silhouettes.append(silhouette_score(z, rows_status))
            held = np.isin(bags.row_context, test)
            classifier = LogisticRegression().fit(z[~held], rows_status[~held])
            correct.extend(classifier.predict(z[held]) == rows_status[held])
        records.append({"seed": seed, "silhouette": float(np.mean(silhouettes)),
                        "held_out_accuracy": float(np.mean(correct)),
                        "majority_accuracy": float(max(rows_status.mean(),
                                                       1 - rows_status.mean()))})
    return pd.DataFrame(records)


def _ranking_function(objective: perturbx.PerturbXObjective):
    """f((variables, perturbation, axis), selected-gene bags) -> projection on the axis."""
    def value(args, inputs):
        variables, perturbation, axis = args
        pooled = objective.module.apply(variables, inputs, perturbation,
                                        method=perturbx.PerturbX.pooled_from_selected)
        return pooled @ axis
    return value


def rank_genes(objective: perturbx.PerturbXObjective, result: FitResult, bags: BagData,
               latents: np.ndarray, config: PerturbXStudyConfig
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shapley gene importance on the first principal axis of each model's aggregated
    latents (all lines), averaged over models; and per-model diagnostics (the genes its
    selector reads, its convergence, the Shapley errors)."""
    rng = np.random.default_rng(config.fold_seed)
    value = _ranking_function(objective)
    # One fixed sample of control cells per line, the same for every model.
    cells = np.stack([bags.cells[start + rng.choice(count, config.shapley_cells)] for start, count
                      in zip(bags.control_start, bags.control_count, strict=True)])
    control = bags.control_cells()
    if config.standardise_inputs:  # the model's own view of the genes
        scaling = bags.input_standardisation()
        cells, control = ((a - scaling["gene_mean"]) / scaling["gene_scale"]
                          for a in (cells, control))
    importance = np.zeros((len(latents), len(bags.genes)))
    diagnostics = []
    for member in range(len(latents)):
        params = jax.tree_util.tree_map(lambda a, m=member: a[m], result.params)
        state = jax.tree_util.tree_map(lambda a, m=member: a[m], result.model_state)
        logits = params["selector"]["logits"]
        selected = np.asarray(distinct_selection(logits))
        z = latents[member] - latents[member].mean(0)
        axis = np.linalg.svd(z, full_matrices=False)[2][0]
        perturbation = jnp.eye(len(bags.perturbations))[0]
        estimate = sampled_shapley(
            value, ({"params": params, **state}, perturbation, jnp.asarray(axis)),
            jnp.asarray(cells[:, :, selected]), jnp.asarray(control[:, selected].mean(0)),
            jax.random.PRNGKey(member), config.shapley_permutations,
            config.shapley_tolerance)
        per_gene = np.abs(estimate.values).mean(axis=0)
        importance[member, selected] = per_gene / per_gene.sum()
        diagnostics.append({
            "member": member, "selected_genes": " ".join(bags.genes[selected]),
            "selector_mean_max_probability":
                float(mean_max_probability(logits)),
            "selector_converged": bool(mean_max_probability(logits) >= CONVERGED),
            "explained_variance_pc1": float(np.linalg.svd(z, compute_uv=False)[0] ** 2
                                            / (z ** 2).sum()),
            "shapley_permutations": estimate.n_permutations,
            "shapley_max_relative_se": float(np.max(
                estimate.standard_error / np.abs(estimate.values).max(-1, keepdims=True))),
            "shapley_converged": estimate.converged})
    ranking = pd.DataFrame({"gene": bags.genes, "importance": importance.mean(0),
                            "selected_by": (importance > 0).mean(0)})
    ranking = ranking.sort_values("importance", ascending=False, kind="stable")
    return ranking.reset_index(drop=True), pd.DataFrame(diagnostics)


@dataclasses.dataclass
class PerturbXResults:
    """Every table of the study by name (as written to `<name>.csv`), the per-model means
    behind Table 1, and the summary."""

    tables: dict[str, pd.DataFrame]
    means: pd.DataFrame
    summary: str


def run(config: PerturbXStudyConfig, workdir: str | Path) -> PerturbXResults:
    """The study on its configured data (`load_data`); see `run_on`."""
    cells, programme = load_data(config)
    return run_on(cells, config, workdir, programme)


def run_on(adata: ad.AnnData, config: PerturbXStudyConfig, workdir: str | Path,
           programme: list[str] | None = None) -> PerturbXResults:
    """The whole study; `programme` (the true response genes, when known) scores the ranking."""
    workdir = Path(workdir)
    bags = BagData.from_anndata(adata, MIXSEQ_SPEC)
    if len(bags.perturbations) != 1:
        raise ValueError(f"the study ranks genes for one perturbation; found "
                         f"{list(bags.perturbations)} (subset the data)")
    status = line_status(adata, bags, config.status_key)
    test_contexts = make_folds(status, config.n_folds, config.fold_seed, config.status_key)
    train_rows = fold_rows(bags, test_contexts, config.fold_seed)
    objective, result = train_folds(bags, train_rows, config)
    standardisation = {k: v for k, v in shared_arrays(bags, config).items() if k != "cells"}
    everything = bags.full_bags(np.arange(bags.n_rows))
    predictions = predict_members(objective, result, everything, shared=standardisation)
    latents = np.asarray(jax.jit(jax.vmap(objective.latents, in_axes=(0, 0, None)))(
        result.params, result.model_state, everything | standardisation))
    top = top_effect_genes(bags.targets, config.n_top_degs)

    n_seeds = len(config.seeds)
    records = []
    for fold, test in enumerate(test_contexts):
        held = np.flatnonzero(np.isin(bags.row_context, test))
        train = np.flatnonzero(~np.isin(bags.row_context, test))
        for s, seed in enumerate(config.seeds):
            records += score_rows(bags, status, held, predictions[fold * n_seeds + s][held],
                                  top, model=MODEL, fold=fold, seed=seed)
        for name, effect in reference_predictions(bags, status, train, held,
                                                  config.k_neighbours).items():
            records += score_rows(bags, status, held, effect, top, model=name, fold=fold,
                                  seed=0)
    scores = pd.DataFrame(records)
    table, means = summarise(scores)
    separation = latent_separation(latents, status, test_contexts, n_seeds, bags)
    ranking, diagnostics = rank_genes(objective, result, bags, latents, config)
    if programme is not None:
        ranking["in_programme"] = ranking["gene"].isin(programme)
    results = {"scores": scores, "table": table.reset_index(), "separation": separation,
               "ranking": ranking, "diagnostics": diagnostics}
    summary = write_results(results, bags, status, test_contexts, predictions, latents, top,
                            config, workdir)
    return PerturbXResults(results, means, summary)
