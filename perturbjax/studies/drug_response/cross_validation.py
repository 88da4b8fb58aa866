"""Nested, repeated k-fold over the pool's cell lines: the grid searched on inner splits as one
compiled program, the chosen point refit per outer fold beside ridge and the references."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import r2_score
from sklearn.model_selection import RepeatedKFold

from perturbjax.data.gdsc import DrugResponse, line_key
from perturbjax.data.preprocess import Standardiser
from perturbjax.drug.features import QuantileBins, expression_filter, within_sample_quantiles
from perturbjax.drug.grid import GridData, GridPoint, GridRun, product_runs, train_runs
from perturbjax.linear import RidgeCV
from perturbjax.studies.drug_response.config import REFERENCES, DrugStudyConfig

logger = logging.getLogger("perturbjax")


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

    def folds(self, train_sets: list[np.ndarray]) -> tuple[GridData, list[Standardiser]]:
        """GridData for these training sets and each fold's target standardiser."""
        features, targets, scalers = [], [], []
        for rows in train_sets:
            raw, _ = self.raw(rows)
            features.append(Standardiser(raw[rows], np.float32)(raw))
            y_scaler = Standardiser(self.response[rows, None], np.float32)
            targets.append(y_scaler(self.response[:, None])[:, 0])
            scalers.append(y_scaler)
        width = max(len(r) for r in train_sets)
        padded = np.zeros((len(train_sets), width), np.int32)
        for f, rows in enumerate(train_sets):
            padded[f, : len(rows)] = rows
        return GridData(np.stack(features), np.stack(targets), padded,
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
    refit = train_runs([GridRun(points[chosen[f]], f, s) for f in range(len(splits))
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
