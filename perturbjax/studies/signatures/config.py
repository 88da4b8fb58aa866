"""The signature study's settings, checked as they are made."""

from __future__ import annotations

import dataclasses

import numpy as np

from perturbjax.errors import RunValidationError

EXPERIMENTS = ("random", "cluster", "scaled_exposures", "leave_one_cluster_out")
MODELS = ("ridge", "multitask_lasso")


@dataclasses.dataclass(frozen=True)
class SignatureStudyConfig:
    """Settings of the study; the defaults are the original code's, with a wider ridge grid.

    The data: the user's two tables (`expression`: counts, genes x cells; `exposures`: cells x
    signatures), or else the semi-synthetic set of `n_cells` cells built from the real parts
    in `data_dir` (default: $PERTURBJAX_DATA or ../shared/data). The original code used
    RidgeCV's default alphas (0.1, 1, 10), far too weak a penalty for ~2,000 standardised
    genes; here 13 values from 0.1 to 1e5 (the chosen alphas are reported).
    """

    expression: str | None = None
    exposures: str | None = None
    data_dir: str | None = None
    n_cells: int = 600

    experiments: tuple[str, ...] = EXPERIMENTS
    n_genes: int = 2000
    cv: int = 10
    ridge_alphas: tuple[float, ...] = tuple(np.logspace(-1, 5, 13))
    lasso_alphas: int = 100
    tol: float = 1e-4
    n_pcs: int = 40
    max_clusters: int = 10
    top_k: int = 10
    bootstrap: int = 1000
    stability: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        unknown = set(self.experiments) - set(EXPERIMENTS)
        if unknown:
            problems.append(f"experiments: unknown {sorted(unknown)}; choose from "
                            f"{list(EXPERIMENTS)}")
        if self.cv < 2:
            problems.append(f"cv: {self.cv}; expected at least 2 folds")
        for name in ("n_genes", "lasso_alphas", "bootstrap", "stability", "top_k"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)}; expected a positive number")
        if (self.expression is None) != (self.exposures is None):
            problems.append("expression, exposures: give both tables or neither")
        if problems:
            raise RunValidationError("SignatureStudyConfig", problems)
