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
from sklearn.model_selection import StratifiedKFold

from perturbjax.data.bags import BagBatch, BagData
from perturbjax.data.mixseq import MIXSEQ_SPEC
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig
from perturbjax.errors import PerturbjaxError, RunValidationError, seed_problem
from perturbjax.metrics.expression import mean_effect_scores, top_effect_genes
from perturbjax.models import effect_references as refs
from perturbjax.models import perturbx
from perturbjax.nn.concrete import CONVERGED, distinct_selection, mean_max_probability
from perturbjax.shapley import sampled_shapley
from perturbjax.studies.perturbx_data import load_data
from perturbjax.studies.perturbx_report import MODEL, summarise, write_results
from perturbjax.train import FitResult, Folds, TrainConfig, TrainState, fit, predict_members

logger = logging.getLogger("perturbjax")

DEFAULT_FOLDS = 6


@dataclasses.dataclass(frozen=True)
class PerturbXStudyConfig:
    """Everything the study needs, its data source first.

    Attributes:
      toy: the download-free toy set (a known programme) instead of other data.
      mixseq_dir, experiments, status_csv: real MIX-seq data: the experiment folders (the
        DMSO control and one drug) and each line's TP53 status (a CSV with columns
        cell_line, tp53_wt; default: from the GDSC mutations in `data_dir`).
      data_dir: the shared data folder with gdsc/ (default: $PERTURBJAX_DATA or
        ../shared/data); without `mixseq_dir` the semi-synthetic set is built around its
        real lines (`simulation`, seeded by `fold_seed`).
      hvgs: keep this many highly variable genes (scanpy); None keeps every gene.
      model: the PerturbX architecture and objective.
      n_folds, fold_seed: stratified folds over cell lines; `None`: `DEFAULT_FOLDS`, or as
        many as the smaller status class has lines when it has fewer.
      seeds: initialisation / bootstrap seeds; every fold x seed is one member.
      epochs, batch_size, learning_rate: Adam on bags (batch_size bags per step).
      selector_speed: the selector's logits take steps this many times larger (they must
        move by ~log(genes) + 6 for the reference's convergence check, which at the base
        rate takes far more steps than the decoder needs).
      standardise_inputs: the model reads each gene standardised over all control cells
        (unperturbed inputs, also available for the lines it predicts; no target is used),
        so the selector is not drawn to genes merely for their dynamic range.
      gene_weights: 'response' (each fold's mean |effect| per gene over its training lines,
        scaled to mean 1: the paper's weighting) or 'uniform'.
      status_key: obs column, constant within a line, that stratifies the folds.
      n_top_degs: genes scored by R^2 and MSE (by mean |effect| over all lines).
      k_neighbours: lines averaged by the nearest-lines reference.
      shapley_permutations, shapley_cells, shapley_tolerance: the gene ranking's sampling.
      n_top_genes: genes reported (and scored against a known programme).
    """

    toy: bool = False
    mixseq_dir: str | None = None
    experiments: tuple[str, ...] = ("DMSO_24hr_expt1", "Idasanutlin_24hr_expt1")
    status_csv: str | None = None
    data_dir: str | None = None
    simulation: MixSeqSimConfig = MixSeqSimConfig()
    hvgs: int | None = None
    model: perturbx.PerturbXConfig = perturbx.PerturbXConfig()
    n_folds: int | None = None
    fold_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 300
    batch_size: int = 4
    learning_rate: float = 1e-3
    selector_speed: float = 50.0
    standardise_inputs: bool = True
    gene_weights: str = "response"
    status_key: str = "tp53_wt"
    n_top_degs: int = 100
    k_neighbours: int = 3
    shapley_permutations: int = 128
    shapley_cells: int = 32
    shapley_tolerance: float = 0.05
    n_top_genes: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.gene_weights not in ("response", "uniform"):
            problems.append(f"gene_weights: '{self.gene_weights}'; expected 'response' or "
                            "'uniform'")
        if self.n_folds is not None and self.n_folds < 2:
            problems.append(f"n_folds: {self.n_folds}; expected at least 2 folds")
        problems += [p for p in [seed_problem("seeds", self.seeds)] if p]
        for name in ("epochs", "batch_size", "shapley_permutations", "n_top_degs"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)}; expected a positive number")
        if problems:
            raise RunValidationError("PerturbXStudyConfig", problems)


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
