"""Both models fitted on one training set, their scores, and one evaluation's record."""

from __future__ import annotations

import dataclasses

import numpy as np

from perturbjax.data.preprocess import Standardiser
from perturbjax.linear import MultiTaskLassoCV, RidgeCV
from perturbjax.linear.base import r2_per_target
from perturbjax.studies.signatures.config import SignatureStudyConfig


@dataclasses.dataclass
class Fitted:
    """Both models fitted on one training set, and how its inputs were scaled."""

    genes: np.ndarray
    scaler: Standardiser
    ridge: RidgeCV
    lasso: MultiTaskLassoCV

    def features(self, logged: np.ndarray) -> np.ndarray:
        """The kept genes of log-CPM cells, standardised with the fitting cells' statistics."""
        return self.scaler(logged[:, self.genes])

    def predict(self, logged: np.ndarray) -> dict[str, np.ndarray]:
        """Exposures predicted by each model."""
        x = self.features(logged)
        return {"ridge": self.ridge.predict(x), "multitask_lasso": self.lasso.predict(x)}


def fit_models(logged: np.ndarray, targets: np.ndarray, config: SignatureStudyConfig
               ) -> Fitted:
    """Genes by variance on these cells, their scaling, then RidgeCV per target and
    MultiTaskLassoCV, both with `config.cv`-fold CV inside these cells."""
    genes = np.sort(np.argsort(logged.var(axis=0))[::-1][: config.n_genes])
    scaler = Standardiser(logged[:, genes])
    x = scaler(logged[:, genes])
    ridge = RidgeCV(config.ridge_alphas, cv=config.cv, alpha_per_target=True).fit(x, targets)
    lasso = MultiTaskLassoCV(alphas=config.lasso_alphas, cv=config.cv, tol=config.tol).fit(
        x, targets)
    return Fitted(genes, scaler, ridge, lasso)


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | np.ndarray]:
    """R^2 per signature and overall (their mean), MSE, MSE over the pooled variance."""
    per_signature = r2_per_target(truth, predicted)
    mse = float(((truth - predicted) ** 2).mean())
    return {"r2_per_signature": per_signature, "r2": float(per_signature.mean()),
            "mse": mse, "mse_over_variance": mse / float(truth.var())}


def bootstrap_r2(truth: np.ndarray, predicted: np.ndarray, n: int, seed: int
                 ) -> tuple[float, float]:
    """95% percentile interval of overall R^2 over test cells resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws = [scores(truth[i], predicted[i])["r2"]
             for i in (rng.integers(0, len(truth), len(truth)) for _ in range(n))]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.where(norms > 0, norms, np.nan)


@dataclasses.dataclass
class Evaluation:
    """One experiment on one test set: predictions (both models and the training-mean
    reference) and the fitted models."""

    experiment: str
    part: str
    train: np.ndarray
    truth: np.ndarray
    predictions: dict[str, np.ndarray]
    fitted: Fitted
    catalogues: np.ndarray | None
