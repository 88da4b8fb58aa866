"""The numpy regression path against scikit-learn's definitions (the reference library)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import linear_model as sk
from sklearn.exceptions import ConvergenceWarning

from perturbjax.linear import MultiTaskLasso, MultiTaskLassoCV
from tests.linear.problems import relative, sparse_problem

PROBLEMS = [(60, 20, 3), (40, 120, 4)]            # more samples than features, and fewer


def test_multitask_lasso_matches_sklearn_at_one_alpha():
    x, y = sparse_problem(60, 20, 3)
    ref = sk.MultiTaskLasso(alpha=0.3, tol=1e-12, max_iter=100_000).fit(x, y)
    ours = MultiTaskLasso(alpha=0.3, tol=1e-12, max_iter=100_000).fit(x, y)
    assert relative(ours.coef_, ref.coef_) < 1e-8
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8)


@pytest.mark.parametrize("shape, n_jobs", [(PROBLEMS[0], 1), (PROBLEMS[1], None)])
def test_multitask_lasso_cv_matches_sklearn_at_tight_tolerance(shape, n_jobs):
    x, y = sparse_problem(*shape)
    settings = dict(alphas=30, cv=5, tol=1e-10, max_iter=100_000)
    ref = sk.MultiTaskLassoCV(**settings).fit(x, y)
    ours = MultiTaskLassoCV(**settings, n_jobs=n_jobs).fit(x, y)
    np.testing.assert_allclose(ours.alphas_, ref.alphas_, rtol=1e-12)
    assert ours.alpha_ == pytest.approx(ref.alpha_, rel=1e-12)
    np.testing.assert_allclose(ours.mse_path_, ref.mse_path_, rtol=1e-6)
    assert relative(ours.coef_, ref.coef_) < 1e-6
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6)
    np.testing.assert_array_equal(np.abs(ours.coef_).sum(0) > 0, np.abs(ref.coef_).sum(0) > 0)


@pytest.mark.parametrize("shape", PROBLEMS)
def test_multitask_lasso_cv_at_default_tolerance_is_within_the_documented_difference(shape):
    """Both stop at a duality gap <= 1e-4 ||Y||^2 but after different sweeps: coefficients
    agree to ~1e-3 relative and the chosen alpha is the same or a neighbour on the grid."""
    x, y = sparse_problem(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = sk.MultiTaskLassoCV(cv=5).fit(x, y)
    ours = MultiTaskLassoCV(cv=5).fit(x, y)
    chosen = [int(np.argmin(np.abs(model.alphas_ - model.alpha_))) for model in (ours, ref)]
    assert abs(chosen[0] - chosen[1]) <= 1
    if chosen[0] == chosen[1]:
        assert relative(ours.coef_, ref.coef_) < 1e-2
    np.testing.assert_allclose(ours.mse_path_, ref.mse_path_, rtol=5e-2)


def test_multitask_lasso_cv_on_real_single_cell_expression(cellbench_counts):
    """Real-shaped input: standardised log-CPM CellBench genes, correlated and sparse."""
    counts = cellbench_counts.iloc[:200, :80].to_numpy(np.float64)
    x = np.log1p(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 1e6)
    x = x[:, x.std(axis=0) > 0]
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(0)
    y = np.abs(x[:, :6] @ rng.normal(size=(6, 4)) + rng.normal(size=(len(x), 4)))
    settings = dict(alphas=20, cv=5, tol=1e-10, max_iter=100_000)
    ref = sk.MultiTaskLassoCV(**settings).fit(x, y)
    ours = MultiTaskLassoCV(**settings).fit(x, y)
    assert ours.alpha_ == pytest.approx(ref.alpha_, rel=1e-12)
    assert relative(ours.coef_, ref.coef_) < 1e-6


def test_multitask_lasso_refuses_a_single_target():
    x, y = sparse_problem(30, 5, 1)
    with pytest.raises(ValueError, match="2-D"):
        MultiTaskLassoCV().fit(x, y[:, 0])
