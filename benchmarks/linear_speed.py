"""Our RidgeCV and MultiTaskLassoCV against scikit-learn's, same problem, same run.

The problem is the issue's 600 cells x 2,000 genes x 6 signatures: the semi-synthetic
exposure data (real CellBench cells, standardised log-CPM of the 2,000 most variable genes)
when ../shared/data is present, else Gaussian features with a sparse 6-target program.
scikit-learn's ridge is one `RidgeCV(alphas=20 values, cv=10)` per signature, as the original code
ran it; ours is one call with `alpha_per_target=True`. Both lassos use cv=10, 100 alphas and
tol=1e-4, timed with one thread (scikit-learn's default) and with the folds on two threads
(`n_jobs=2`; ours by default uses one per core). Each estimator is timed after a warm-up fit
(numba compiles on first use).

  python benchmarks/linear_speed.py [--skip-sklearn-lasso]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn import linear_model as sk
from sklearn.exceptions import ConvergenceWarning

from perturbjax.data import shared_data_dir
from perturbjax.data.preprocess import log_cpm
from perturbjax.linear import MultiTaskLassoCV, RidgeCV


def problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    data = shared_data_dir()
    if data is not None:
        from perturbjax.data.synthetic_exposures import ExposureSimConfig, make_exposure_data
        adata = make_exposure_data(data, ExposureSimConfig(n_cells=600, seed=seed))
        logged = log_cpm(np.asarray(adata.X, dtype=np.float64))
        logged = logged[:, np.argsort(-logged.var(axis=0))[:2000]]
        x = (logged - logged.mean(0)) / logged.std(0)
        return x, adata.obsm["exposures"].to_numpy(), "semi-synthetic exposures (CellBench)"
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 2000))
    y = x[:, :30] @ rng.normal(size=(30, 6)) + rng.normal(size=(600, 6)) * 3
    return x, y, "Gaussian features"


def timed(fit) -> tuple[float, object]:
    start = time.perf_counter()
    model = fit()
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sklearn-lasso", action="store_true",
                        help="skip scikit-learn's MultiTaskLassoCV (minutes on 2 cores)")
    args = parser.parse_args()
    x, y, source = problem()
    print(f"problem: {x.shape[0]} x {x.shape[1]} x {y.shape[1]} ({source})")
    alphas = np.logspace(-1, 5, 20)
    warnings.simplefilter("ignore", ConvergenceWarning)

    RidgeCV(alphas, cv=10, alpha_per_target=True).fit(x[:100, :50], y[:100])   # warm-up
    ours_ridge_s, ours_ridge = timed(lambda: RidgeCV(alphas, cv=10,
                                                     alpha_per_target=True).fit(x, y))
    sk_ridge_s, sk_ridges = timed(lambda: [sk.RidgeCV(alphas=alphas, cv=10).fit(x, y[:, k])
                                           for k in range(y.shape[1])])
    same = all(ours_ridge.alpha_[k] == m.alpha_ for k, m in enumerate(sk_ridges))
    diff = max(np.abs(ours_ridge.coef_[k] - m.coef_).max() / np.abs(m.coef_).max()
               for k, m in enumerate(sk_ridges))
    print("| estimator | ours (s) | scikit-learn (s) | ratio | same alpha | max rel. coef diff |")
    print("|---|---|---|---|---|---|")
    print(f"| RidgeCV, 20 alphas, cv=10, 6 targets | {ours_ridge_s:.2f} | {sk_ridge_s:.1f} | "
          f"{sk_ridge_s / ours_ridge_s:.0f}x | {same} | {diff:.1e} |")

    MultiTaskLassoCV(cv=3, alphas=5).fit(x[:60, :40], y[:60])                  # warm-up
    ours_s, ours = timed(lambda: MultiTaskLassoCV(cv=10, n_jobs=2).fit(x, y))
    if args.skip_sklearn_lasso:
        print(f"| MultiTaskLassoCV, 100 alphas, cv=10 | {ours_s:.1f} | skipped | | | |")
        return
    ours_1_s, _ = timed(lambda: MultiTaskLassoCV(cv=10, n_jobs=1).fit(x, y))
    for jobs in (1, 2):
        sk_s, ref = timed(lambda jobs=jobs: sk.MultiTaskLassoCV(cv=10, n_jobs=jobs).fit(x, y))
        chosen = [int(np.argmin(np.abs(m.alphas_ - m.alpha_))) for m in (ours, ref)]
        diff = np.abs(ours.coef_ - ref.coef_).max() / np.abs(ref.coef_).max()
        mine = ours_1_s if jobs == 1 else ours_s
        print(f"| MultiTaskLassoCV, 100 alphas, cv=10, {jobs} thread(s) each | {mine:.1f} | "
              f"{sk_s:.1f} | {sk_s / mine:.1f}x | grid index {chosen[0]} vs {chosen[1]} | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    main()
