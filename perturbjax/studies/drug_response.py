"""Drug sensitivity: a bulk cell-line network, its transfer to single cells, and GPDS scores.

Protocol (`../shared/specs/drug_response.md`, the seed's flaws fixed):
1. The single-cell lines are held out of everything bulk (they are the transfer test).
2. Genes: the seed's mean / variance filter on the training pool, intersected with the genes
   the single cells measure. Features: within-sample quantiles (default) or the seed's
   20-bin per-gene binning; standardised on training lines only.
3. Nested, repeated k-fold over cell lines: in each outer fold every grid point (x seeds) is
   trained on 80% of the outer training lines, all as one compiled program
   (`perturbjax.train.grid`), and chosen on the other 20%; the chosen point is refit on the
   whole outer training set and scored on the outer test lines, beside the mean predictor
   and ridge on the same features. The grid table also lists every point's outer-test R^2
   (from the 80% fits: informative, optimistic if used to choose).
4. A final ensemble (the point best on inner validation over all folds, several seeds) is
   trained on the whole pool and applied to the held-out lines' bulk profiles, their single
   cells and their pseudo-bulk.
5. GPDS: Pearson correlation (over the pool's model features) vs the network's integrated
   gradients; DREEP-style enrichment of every cell's top genes in each, compared with the
   lines' measured response.
With `lineages`, a lineage-mean reference and within-lineage rank correlations say how much
of the cross-validated accuracy is tissue of origin (all five CellBench lines are lung).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import r2_score
from sklearn.model_selection import RepeatedKFold

from perturbjax import plots
from perturbjax.data.gdsc import DrugResponse, line_key
from perturbjax.drug.features import (
    ZSCORED_FILTER,
    QuantileBins,
    Standardiser,
    expression_filter,
    pseudo_bulk,
    sum_counts_by_symbol,
    within_sample_quantiles,
)
from perturbjax.drug.gpds import (
    gficf,
    network_gpds,
    null_enrichment_scores,
    pearson_gpds,
    score_cells,
    top_gene_sets,
)
from perturbjax.errors import RunValidationError, seed_problem
from perturbjax.files import write_csv, write_text
from perturbjax.linear import RidgeCV
from perturbjax.models.mlp_regressor import MLPRegressor
from perturbjax.studies.report import markdown_table
from perturbjax.train.grid import (
    SEED_GRID,
    FoldData,
    GridPoint,
    Run,
    parameter_grid,
    product_runs,
    train_runs,
)

logger = logging.getLogger("perturbjax")

CELLBENCH_LINES = ("A549", "NCI-H838", "NCI-H1975", "NCI-H2228", "HCC827")
FEATURES = ("quantiles", "bins")
GPDS_NAMES = ("pcc", "network")
REFERENCES = ("mean", "lineage mean")
GRIDS = {
    "seed": SEED_GRID,
    "small": parameter_grid(hidden=((16, 8),), activation=("relu", "tanh"),
                            learning_rate=(3e-3,), batch_size=(16,), epochs=(10, 20)),
}


@dataclasses.dataclass(frozen=True)
class DrugStudyConfig:
    """Settings of the study; defaults are the seed's where it had one."""

    features: str = "quantiles"
    gene_filter: tuple[float, float] | None = ZSCORED_FILTER  # None keeps every gene
    n_bins: int = 20
    grid: str = "seed"
    folds: int = 5
    repeats: int = 2
    inner_validation: float = 0.2
    seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    held_out_lines: tuple[str, ...] = CELLBENCH_LINES
    ridge_alphas: tuple[float, ...] = tuple(np.logspace(-1, 5, 25))
    ig_steps: int = 32
    set_size: int = 250
    permutations: int = 1000
    fdr: float = 0.1
    top_genes: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        problems = []
        if self.features not in FEATURES:
            problems.append(f"features: '{self.features}'; expected one of {list(FEATURES)}")
        if self.grid not in GRIDS:
            problems.append(f"grid: '{self.grid}'; expected one of {sorted(GRIDS)}")
        if self.folds < 2:
            problems.append(f"folds: {self.folds}; expected at least 2 outer folds")
        if self.repeats < 1 or self.permutations < 1:
            problems.append(f"repeats, permutations: {self.repeats}, {self.permutations}; "
                            "expected positive numbers")
        if not 0 < self.inner_validation < 1:
            problems.append(f"inner_validation: {self.inner_validation}; expected a fraction "
                            "in (0, 1)")
        problems += [p for p in (seed_problem(n, getattr(self, n))
                                 for n in ("seeds", "final_seeds")) if p]
        if problems:
            raise RunValidationError("DrugStudyConfig", problems)


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R^2 (scikit-learn's, against the test set's own mean), MSE, Pearson and Spearman."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if not np.isfinite(y_pred).all():
        return {"r2": np.nan, "mse": np.nan, "pearson": np.nan, "spearman": np.nan}
    constant = np.ptp(y_pred) == 0
    return {"r2": r2_score(y_true, y_pred), "mse": float(np.mean((y_true - y_pred) ** 2)),
            "pearson": np.nan if constant else float(np.corrcoef(y_true, y_pred)[0, 1]),
            "spearman": np.nan if constant else float(spearmanr(y_true, y_pred)[0])}


class Design:
    """Bulk features of the pool, fold by fold, standardised on each fold's training rows."""

    def __init__(self, expression: np.ndarray, response: np.ndarray, config: DrugStudyConfig,
                 lineages: np.ndarray | None = None):
        self.expression = expression
        self.response = response
        self.config = config
        self.lineages = lineages
        self.quantiles = (within_sample_quantiles(expression)
                          if config.features == "quantiles" else None)

    def raw(self, train_rows: np.ndarray) -> tuple[np.ndarray, QuantileBins | None]:
        """Unstandardised features of every pool line (bins fitted on `train_rows`)."""
        if self.quantiles is not None:
            return self.quantiles, None
        bins = QuantileBins(self.config.n_bins).fit(self.expression[train_rows])
        return bins.transform(self.expression), bins

    def folds(self, train_sets: list[np.ndarray]) -> tuple[FoldData, list[Standardiser]]:
        """FoldData for these training sets and each fold's target standardiser."""
        features, targets, scalers = [], [], []
        for rows in train_sets:
            raw, _ = self.raw(rows)
            features.append(Standardiser(raw[rows])(raw))
            y_scaler = Standardiser(self.response[rows, None])
            targets.append(y_scaler(self.response[:, None])[:, 0])
            scalers.append(y_scaler)
        width = max(len(r) for r in train_sets)
        padded = np.zeros((len(train_sets), width), np.int32)
        for f, rows in enumerate(train_sets):
            padded[f, : len(rows)] = rows
        return FoldData(np.stack(features), np.stack(targets), padded,
                        np.asarray([len(r) for r in train_sets])), scalers


def split_pool(bulk: DrugResponse, config: DrugStudyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over the bulk lines: the training pool and the held-out lines."""
    held_keys = {line_key(n) for n in config.held_out_lines}
    held = bulk.response.index.map(line_key).isin(held_keys)
    missing = held_keys - set(bulk.response.index[held].map(line_key))
    if missing:
        logger.warning("held-out lines without bulk data: %s", sorted(missing))
    return ~np.asarray(held), np.asarray(held)


def select_genes(bulk: DrugResponse, pool: np.ndarray, counts: pd.DataFrame | None,
                 config: DrugStudyConfig) -> pd.Index:
    """The gene filter on the pool's bulk profiles, intersected with the genes detected in
    the single cells (when given)."""
    genes = (expression_filter(bulk.expression[pool], *config.gene_filter)
             if config.gene_filter else bulk.expression.columns)
    if counts is not None:
        genes = genes.intersection(counts.columns[counts.sum(0) > 0], sort=False)
        if len(genes) < 10:
            raise ValueError(f"only {len(genes)} genes are in both the filtered bulk "
                             "profiles and the single cells; check the gene symbols")
    return genes


def outer_and_inner_splits(n: int, config: DrugStudyConfig) -> list[tuple[np.ndarray, ...]]:
    """(inner train, inner validation, outer train, outer test) row sets per outer fold."""
    rng = np.random.default_rng(config.seed)
    splits = []
    splitter = RepeatedKFold(n_splits=config.folds, n_repeats=config.repeats,
                             random_state=config.seed)
    for outer_train, outer_test in splitter.split(np.zeros(n)):
        shuffled = rng.permutation(outer_train)
        n_val = max(1, round(config.inner_validation * len(shuffled)))
        splits.append((np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val]),
                       outer_train, outer_test))
    return splits


def lineage_mean(lineages: np.ndarray, y: np.ndarray, train_rows: np.ndarray,
                 test_rows: np.ndarray) -> np.ndarray:
    """The training lines' mean response in each test line's lineage (the overall training
    mean for a lineage with no training line): what tissue of origin alone predicts."""
    means = pd.Series(y[train_rows]).groupby(lineages[train_rows]).mean()
    return pd.Series(lineages[test_rows]).map(means).fillna(y[train_rows].mean()).to_numpy()


def cross_validate(design: Design, config: DrugStudyConfig, points: list[GridPoint]
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, GridPoint]:
    """Nested CV: (per-fold scores of every model, out-of-fold predictions, per-run grid
    scores, final point)."""
    splits = outer_and_inner_splits(len(design.response), config)
    y = design.response
    inner, inner_scalers = design.folds([s[0] for s in splits])
    start = time.perf_counter()
    search = train_runs(product_runs(points, range(len(splits)), config.seeds), inner)
    logger.info("grid: %d runs (%d points x %d folds x %d seeds) in %.1f s",
                len(search.runs), len(points), len(splits), len(config.seeds),
                time.perf_counter() - start)
    grid_rows, index_of = [], {point: i for i, point in enumerate(points)}
    for run, pred, diverged in zip(search.runs, search.predictions, search.diverged,
                                   strict=True):
        _, val_rows, _, test_rows = splits[run.fold]
        pred = inner_scalers[run.fold].inverse(pred[:, None])[:, 0]
        grid_rows.append({**dataclasses.asdict(run.point), "point": index_of[run.point],
                          "fold": run.fold, "seed": run.seed,
                          "diverged": bool(diverged),
                          "inner_r2": regression_scores(y[val_rows], pred[val_rows])["r2"],
                          "outer_r2": regression_scores(y[test_rows], pred[test_rows])["r2"]})
    grid = pd.DataFrame(grid_rows)
    inner_mean = grid.groupby(["fold", "point"])["inner_r2"].mean().fillna(-np.inf)
    chosen = inner_mean.groupby(level="fold").idxmax().map(lambda fp: fp[1])

    outer, outer_scalers = design.folds([s[2] for s in splits])
    refit = train_runs([Run(points[chosen[f]], f, s) for f in range(len(splits))
                        for s in config.seeds], outer)
    rows, out_of_fold = [], []
    for f, (_, _, train_rows, test_rows) in enumerate(splits):
        members = [i for i, r in enumerate(refit.runs) if r.fold == f]
        mlp = outer_scalers[f].inverse(refit.predictions[members].mean(0)[:, None])[:, 0]
        ridge = RidgeCV(alphas=config.ridge_alphas).fit(
            outer.features[f, train_rows].astype(np.float64), y[train_rows])
        predictions = {
            "mlp (nested)": mlp[test_rows],
            "ridge": ridge.predict(outer.features[f, test_rows].astype(np.float64)),
            "mean": np.full(len(test_rows), y[train_rows].mean()),
        }
        if design.lineages is not None:
            predictions["lineage mean"] = lineage_mean(design.lineages, y, train_rows,
                                                       test_rows)
        for model, pred in predictions.items():
            rows.append({"fold": f, "model": model, "n_test": len(test_rows),
                         **regression_scores(y[test_rows], pred),
                         **({"point": chosen[f]} if model == "mlp (nested)" else {}),
                         **({"alpha": float(ridge.alpha_)} if model == "ridge" else {})})
            out_of_fold.append(pd.DataFrame({"repeat": f // config.folds, "row": test_rows,
                                             "model": model, "prediction": pred}))
    overall = grid.groupby("point")["inner_r2"].mean().fillna(-np.inf)
    return (pd.DataFrame(rows), pd.concat(out_of_fold, ignore_index=True), grid,
            points[int(overall.idxmax())])


def within_lineage(out_of_fold: pd.DataFrame, lineages: np.ndarray, y: np.ndarray,
                   min_lines: int = 20) -> pd.DataFrame:
    """Spearman of out-of-fold predictions with the response inside each lineage with at
    least `min_lines` lines (mean over repeats): can a model rank lines of one tissue?
    The references are left out: constant within a lineage and fold, their rank correlation
    would only reflect which lines share a fold."""
    learned = ~out_of_fold["model"].isin(REFERENCES)
    frame = out_of_fold[learned].assign(lineage=lineages[out_of_fold["row"][learned]],
                                        measured=y[out_of_fold["row"][learned]])
    counts = pd.Series(lineages).value_counts()
    frame = frame[frame["lineage"].isin(counts.index[counts >= min_lines])]
    rho = frame.groupby(["lineage", "model", "repeat"]).apply(
        lambda g: spearmanr(g["measured"], g["prediction"])[0] if g["prediction"].std() > 0
        else np.nan, include_groups=False)
    table = rho.groupby(level=["lineage", "model"]).mean().unstack("model")
    table.insert(0, "n_lines", counts.reindex(table.index).to_numpy())
    return table.sort_values("n_lines", ascending=False)


def run(bulk: DrugResponse, cells: ad.AnnData | None, config: DrugStudyConfig,
        workdir: str | Path, lineages: pd.Series | None = None) -> dict[str, pd.DataFrame]:
    """The whole study; writes tables, figures and `summary.md` under `workdir`.

    `cells`: single cells (obs `cell_line`, var `symbol`, raw counts) of held-out lines.
    `lineages`: tissue per `line_key` (`perturbjax.data.gdsc.read_lineages`); adds a
    lineage-mean reference and within-lineage Spearman correlations.
    """
    workdir = Path(workdir)
    (workdir / "figures").mkdir(parents=True, exist_ok=True)
    pool, held = split_pool(bulk, config)
    counts = sum_counts_by_symbol(cells) if cells is not None else None
    genes = select_genes(bulk, pool, counts, config)
    logger.info("%d pool lines, %d held-out lines, %d genes", pool.sum(), held.sum(), len(genes))
    expression = bulk.expression.loc[pool, genes].to_numpy(np.float64)
    response = bulk.response[pool].to_numpy(np.float64)
    pool_lineages = None
    if lineages is not None:
        keys = bulk.response.index[pool].map(line_key)
        pool_lineages = np.asarray(keys.map(lineages).fillna("unknown"), dtype=str)
    design = Design(expression, response, config, pool_lineages)
    points = GRIDS[config.grid]

    cv, out_of_fold, grid, final_point = cross_validate(design, config, points)
    logger.info("final configuration: %s", final_point)
    final = _final_ensemble(design, final_point, config)
    out_of_fold.insert(0, "line", bulk.response.index[pool][out_of_fold["row"].to_numpy()])
    results = {"cv": cv, "grid": grid, "out_of_fold": out_of_fold}
    if pool_lineages is not None:
        results["within_lineage"] = within_lineage(out_of_fold, pool_lineages, response)
    if counts is not None:
        results.update(_transfer(bulk, held, counts, cells, genes, final, config))
    _write(results, bulk, config, final_point, workdir)
    return results


@dataclasses.dataclass
class FinalEnsemble:
    """The final point's seeds trained on the whole pool, with the pool's transforms."""

    point: GridPoint
    params: list
    features: np.ndarray
    response: np.ndarray
    standardiser: Standardiser
    response_scaler: Standardiser
    bins: QuantileBins | None
    ridge: RidgeCV

    def ensemble_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Mean prediction of the seeds for one standardised row (standardised target)."""
        module = MLPRegressor(self.point.hidden)
        use_tanh = jnp.asarray(self.point.activation == "tanh")
        stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *self.params)

        def fn(x):
            return jax.vmap(lambda p: module.apply({"params": p}, x, use_tanh))(stacked).mean()

        return fn

    @functools.cached_property
    def _batched(self) -> Callable[[jax.Array], jax.Array]:
        return jax.jit(jax.vmap(self.ensemble_fn()))

    def predict(self, standardised: np.ndarray) -> dict[str, np.ndarray]:
        raw = np.asarray(self._batched(jnp.asarray(standardised)))
        mlp = self.response_scaler.inverse(raw[:, None])
        return {"mlp": mlp[:, 0], "ridge": self.ridge.predict(standardised.astype(np.float64))}


def _final_ensemble(design: Design, point: GridPoint, config: DrugStudyConfig) -> FinalEnsemble:
    rows = np.arange(len(design.response))
    data, scalers = design.folds([rows])
    raw, bins = design.raw(rows)
    trained = train_runs([Run(point, 0, s) for s in config.final_seeds], data, keep_params=True)
    ridge = RidgeCV(alphas=config.ridge_alphas).fit(data.features[0].astype(np.float64),
                                                    design.response)
    return FinalEnsemble(point, trained.params, data.features[0], design.response,
                         Standardiser(raw), scalers[0], bins, ridge)


def _raw_features(values: np.ndarray, final: FinalEnsemble, counts: bool) -> np.ndarray:
    """Unstandardised model features of bulk profiles or of counts (cells, pseudo-bulk)."""
    if final.bins is None:
        return within_sample_quantiles(values)
    if counts:  # the seed's route: bulk bin edges applied to log-CPM (another scale)
        values = np.log1p(values / np.maximum(values.sum(1, keepdims=True), 1) * 1e6)
    return final.bins.transform(values)


def _transfer(bulk: DrugResponse, held: np.ndarray, counts: pd.DataFrame, cells: ad.AnnData,
              genes: pd.Index, final: FinalEnsemble,
              config: DrugStudyConfig) -> dict[str, pd.DataFrame]:
    """Per-cell, pseudo-bulk and bulk predictions of the held-out lines; GPDS and DREEP."""
    measured = {line_key(n): v for n, v in bulk.response[held].items()}
    bulk_raw = _raw_features(bulk.expression.loc[held, genes].to_numpy(np.float64), final,
                             counts=False)
    bulk_pred = final.predict(final.standardiser(bulk_raw))
    bulk_by_key = {line_key(n): i for i, n in enumerate(bulk.response[held].index)}

    cell_counts = counts[genes].to_numpy(np.float64)
    cell_lines = cells.obs["cell_line"].astype(str).map(line_key)
    cell_raw = _raw_features(cell_counts, final, counts=True)
    cell_pred = final.predict(final.standardiser(cell_raw))
    # The platform shift removed per gene: cells standardised on themselves, not on bulk.
    own_pred = final.predict(Standardiser(cell_raw)(cell_raw))
    pseudo = pseudo_bulk(counts[genes], cell_lines)
    pseudo_pred = final.predict(final.standardiser(
        _raw_features(pseudo.to_numpy(np.float64), final, counts=True)))

    per_cell = pd.DataFrame({"cell_line": cell_lines.to_numpy(), "mlp": cell_pred["mlp"],
                             "ridge": cell_pred["ridge"], "mlp_own_scale": own_pred["mlp"],
                             "ridge_own_scale": own_pred["ridge"]}, index=cells.obs_names)
    rows = []
    for i, key in enumerate(pseudo.index):
        if key not in measured:
            logger.warning("cells of line %s have no measured response; skipped", key)
            continue
        mine = per_cell[per_cell["cell_line"] == key]
        b = bulk_by_key[key]
        rows.append({"line": key, "measured": measured[key], "n_cells": len(mine),
                     "bulk_mlp": bulk_pred["mlp"][b], "bulk_ridge": bulk_pred["ridge"][b],
                     "pseudobulk_mlp": pseudo_pred["mlp"][i],
                     "pseudobulk_ridge": pseudo_pred["ridge"][i],
                     "cells_median_mlp": mine["mlp"].median(),
                     "cells_q25_mlp": mine["mlp"].quantile(0.25),
                     "cells_q75_mlp": mine["mlp"].quantile(0.75),
                     "cells_median_ridge": mine["ridge"].median(),
                     "cells_median_mlp_own_scale": mine["mlp_own_scale"].median(),
                     "cells_median_ridge_own_scale": mine["ridge_own_scale"].median()})
    transfer = pd.DataFrame(rows)

    pcc = pearson_gpds(final.features, final.response)
    net = network_gpds(final.ensemble_fn(), final.features, np.zeros(len(genes)), config.ig_steps)
    gpds = pd.DataFrame({"gene": genes, "pcc": pcc, "network": net})

    size = min(config.set_size, len(genes) // 4)
    sets, usable = top_gene_sets(gficf(cell_counts), size)
    null = null_enrichment_scores(len(genes), size, config.permutations, config.seed)
    dreep = per_cell.loc[usable].copy()
    for name in GPDS_NAMES:
        scores = score_cells(sets[usable], gpds[name].to_numpy(), null, config.fdr)
        dreep[f"es_{name}"], dreep[f"q_{name}"] = scores["es"], scores["q"]
        dreep[f"call_{name}"] = scores["call"]
    dreep["measured"] = dreep["cell_line"].map(measured)
    if (~usable).any():
        logger.warning("%d cells have fewer than %d detected model genes; not scored by DREEP",
                       (~usable).sum(), size)
    return {"transfer": transfer, "cells": per_cell, "gpds": gpds, "dreep": dreep}


def _mean_sd(frame: pd.DataFrame, by: str, columns: list[str]) -> pd.DataFrame:
    stats = frame.groupby(by, sort=False)[columns].agg(["mean", "std"])
    return pd.DataFrame({c: [f"{m:.3f} ± {s:.3f}" for m, s in stats[c].to_numpy()]
                         for c in columns}, index=stats.index)


def _overlap(a: pd.Series, b: pd.Series, k: int, largest: bool) -> int:
    pick = (lambda s: s.nlargest(k)) if largest else (lambda s: s.nsmallest(k))
    return len(set(pick(a).index) & set(pick(b).index))


def summarise_transfer(transfer: pd.DataFrame) -> pd.DataFrame:
    """For each prediction column: Spearman with the measured response over lines, and MAE."""
    columns = [c for c in transfer.columns if c not in ("line", "measured", "n_cells")]
    return pd.DataFrame(
        {"spearman": [spearmanr(transfer["measured"], transfer[c])[0] for c in columns],
         "mae": [float(np.abs(transfer[c] - transfer["measured"]).mean()) for c in columns]},
        index=pd.Index(columns, name="prediction"))


def summarise_gpds(gpds: pd.DataFrame, k: int) -> pd.DataFrame:
    """Agreement of the two rankings: Spearman over genes and shared top / bottom genes."""
    pcc, net = gpds.set_index("gene")["pcc"], gpds.set_index("gene")["network"]
    k = min(k, len(gpds) // 2)
    return pd.DataFrame([{"spearman": spearmanr(pcc, net)[0], "k": k,
                          "shared_resistance_top_k": _overlap(pcc, net, k, True),
                          "shared_sensitivity_top_k": _overlap(pcc, net, k, False),
                          "expected_by_chance": k * k / len(gpds)}],
                        index=pd.Index(["pcc vs network"], name="rankings"))


def summarise_dreep(dreep: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per line: median ES and sensitive / resistant call fractions for each GPDS;
    per GPDS: Spearman of the ES with the measured response, over line medians and cells)."""
    rows = []
    for line, part in dreep.groupby("cell_line", sort=True):
        row = {"line": line, "measured": part["measured"].iloc[0], "n_cells": len(part)}
        for name in GPDS_NAMES:
            row[f"median_es_{name}"] = part[f"es_{name}"].median()
            row[f"sensitive_{name}"] = (part[f"call_{name}"] < 0).mean()
            row[f"resistant_{name}"] = (part[f"call_{name}"] > 0).mean()
        rows.append(row)
    per_line = pd.DataFrame(rows).set_index("line")
    agreement = pd.DataFrame(
        {"spearman_line_medians": [spearmanr(per_line["measured"],
                                             per_line[f"median_es_{n}"])[0] for n in GPDS_NAMES],
         "spearman_cells": [spearmanr(dreep["measured"], dreep[f"es_{n}"])[0]
                            for n in GPDS_NAMES],
         "n_lines": len(per_line), "n_cells": len(dreep)},
        index=pd.Index(GPDS_NAMES, name="gpds"))
    return per_line, agreement


def _write(results: dict[str, pd.DataFrame], bulk: DrugResponse, config: DrugStudyConfig,
           final_point: GridPoint, workdir: Path) -> None:
    """Tables, figures and summary.md; every file written atomically."""
    metrics = ["r2", "mse", "pearson", "spearman"]
    cv, grid = results["cv"], results["grid"]
    lines = [f"# Drug response study: {bulk.drug} ({bulk.measure})", "",
             f"Features: {config.features}; grid '{config.grid}' ({grid['point'].nunique()} "
             f"points); {config.folds}-fold x {config.repeats} repeats over cell lines, "
             f"nested selection on {config.inner_validation:.0%} of each training set; "
             f"seeds {list(config.seeds)}.", "",
             "## Cross-validated, held-out cell lines (mean ± sd over outer folds)", "",
             markdown_table(_mean_sd(cv, "model", metrics)), ""]
    by_point = grid.groupby("point").agg(
        inner_r2=("inner_r2", "mean"), outer_r2=("outer_r2", "mean"),
        diverged=("diverged", "sum"))
    described = pd.DataFrame([dataclasses.asdict(p) for p in GRIDS[config.grid]])
    by_point = described.join(by_point).sort_values("inner_r2", ascending=False)
    by_point.index.name = "point"
    lines += ["## Grid (fits on 80% of each outer training set; top 10 by inner R²)", "",
              markdown_table(by_point.head(10)), "",
              f"Best point by outer R² (optimistic, chosen on the test folds): "
              f"{by_point['outer_r2'].max():.3f}. Final configuration (best inner R²): "
              f"{final_point}.", ""]
    files = {"cv.csv": cv, "grid.csv": grid, "out_of_fold.csv": results["out_of_fold"]}
    if "within_lineage" in results:
        lines += ["## Within one lineage (Spearman of out-of-fold predictions, lineages with "
                  ">= 20 lines)", "", markdown_table(results["within_lineage"]), ""]
        files["within_lineage.csv"] = results["within_lineage"].reset_index()
    if "transfer" in results:
        transfer = results["transfer"]
        transfer_summary = summarise_transfer(transfer)
        gpds_summary = summarise_gpds(results["gpds"], config.top_genes)
        dreep_lines, dreep_summary = summarise_dreep(results["dreep"])
        lines += ["## Transfer to single cells (held-out lines)", "",
                  markdown_table(transfer.set_index("line")), "",
                  markdown_table(transfer_summary), "",
                  "## GPDS: Pearson vs network (integrated gradients)", "",
                  markdown_table(gpds_summary), "",
                  "## DREEP-style single-cell enrichment (ES > 0: resistant)", "",
                  markdown_table(dreep_lines), "",
                  "Agreement with the measured response (a resistant-looking cell should "
                  "come from a line with a high ln IC50, so positive is right):", "",
                  markdown_table(dreep_summary), ""]
        files |= {"transfer.csv": transfer, "cells.csv": results["cells"],
                  "gpds.csv": results["gpds"], "dreep.csv": results["dreep"],
                  "transfer_summary.csv": transfer_summary.reset_index(),
                  "gpds_summary.csv": gpds_summary.reset_index(),
                  "dreep_summary.csv": dreep_summary.reset_index()}
        cells = results["cells"]
        by_line = {line: cells.loc[cells["cell_line"] == line, "mlp"].to_numpy()
                   for line in transfer["line"]}
        indexed = transfer.set_index("line")
        plots.prediction_densities(by_line, indexed["measured"].to_dict(),
                                   workdir / "figures" / "cell_predictions.png",
                                   marks={"bulk": indexed["bulk_mlp"].to_dict(),
                                          "pseudo-bulk": indexed["pseudobulk_mlp"].to_dict()})
        gpds = results["gpds"]
        plots.scatter(gpds["pcc"], gpds["network"], "Pearson GPDS", "network GPDS (IG)",
                      workdir / "figures" / "gpds.png")
        dreep = results["dreep"]
        plots.boxes({f"ES, {name} GPDS": {line: part[f"es_{name}"].to_numpy()
                                           for line, part in dreep.groupby("cell_line")}
                     for name in GPDS_NAMES}, "enrichment score",
                    workdir / "figures" / "dreep_es.png")
    plots.metric_bars(cv, metrics, workdir / "figures" / "cv.png")
    for name, frame in files.items():
        write_csv(workdir / name, frame)
    write_text(workdir / "config.json", json.dumps(dataclasses.asdict(config), indent=1))
    write_text(workdir / "summary.md", "\n".join(lines))
