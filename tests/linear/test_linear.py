"""The numpy regression path against scikit-learn's definitions (the reference library)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import linear_model as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, KFold

from perturbjax.linear import MultiTaskLasso, MultiTaskLassoCV, RidgeCV, kfold


def sparse_problem(n, p, t, seed=0, noise=1.0):
    """Y depends on 5 features plus Gaussian noise; features correlated through a factor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + rng.normal(size=(n, 1))
    y = x[:, :5] @ rng.normal(size=(5, t)) + noise * rng.normal(size=(n, t))
    return x, y


def relative(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


PROBLEMS = [(60, 20, 3), (40, 120, 4)]            # more samples than features, and fewer


def test_kfold_is_sklearns_unshuffled_kfold():
    for n, k in [(10, 3), (600, 10), (37, 5)]:
        ours = kfold(n, k)
        for (train, test), (sk_train, sk_test) in zip(ours, KFold(k).split(np.zeros(n)),
                                                       strict=True):
            np.testing.assert_array_equal(train, sk_train)
            np.testing.assert_array_equal(test, sk_test)


@pytest.mark.parametrize("shape", PROBLEMS + [(50, 10, 1)])
@pytest.mark.parametrize("cv", [None, 5, 10])
def test_ridge_cv_chooses_sklearns_alpha_and_coefficients(shape, cv):
    x, y = sparse_problem(*shape, noise=3.0)
    y = y[:, 0] if shape[2] == 1 else y
    alphas = np.logspace(-2, 3, 12)
    ref = sk.RidgeCV(alphas=alphas, cv=cv).fit(x, y)
    ours = RidgeCV(alphas=alphas, cv=cv).fit(x, y)
    assert ours.alpha_ == ref.alpha_
    assert relative(ours.coef_, ref.coef_) < 1e-8
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.best_score_, ref.best_score_, rtol=1e-8)
    np.testing.assert_allclose(ours.predict(x), ref.predict(x), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("cv", [None, 10])
def test_ridge_alpha_per_target_equals_one_sklearn_ridge_cv_per_target(cv):
    x, y = sparse_problem(80, 150, 4, noise=2.0)
    y[:, 1] *= 30.0                                  # targets on different scales
    alphas = np.logspace(-1, 4, 20)
    ours = RidgeCV(alphas=alphas, cv=cv, alpha_per_target=True).fit(x, y)
    for target in range(y.shape[1]):
        ref = sk.RidgeCV(alphas=alphas, cv=cv).fit(x, y[:, target])
        assert ours.alpha_[target] == ref.alpha_
        assert relative(ours.coef_[target], ref.coef_) < 1e-8
        assert ours.best_score_[target] == pytest.approx(ref.best_score_, rel=1e-8)


def test_ridge_cv_takes_a_grouped_splitter_like_sklearn():
    x, y = sparse_problem(90, 30, 2, noise=2.0)
    groups = np.repeat(np.arange(6), 15)
    splits = list(GroupKFold(3).split(x, y, groups))
    ref = sk.RidgeCV(alphas=np.logspace(-2, 3, 8), cv=splits).fit(x, y)
    ours = RidgeCV(alphas=np.logspace(-2, 3, 8), cv=splits).fit(x, y)
    assert ours.alpha_ == ref.alpha_
    assert relative(ours.coef_, ref.coef_) < 1e-8


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


@pytest.mark.parametrize("estimator", [RidgeCV(), MultiTaskLassoCV(cv=3)])
def test_bad_input_is_refused_with_a_clear_error(estimator):
    x, y = sparse_problem(30, 5, 2)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimator.fit(bad, y)
    with pytest.raises(ValueError, match="rows like X"):
        estimator.fit(x, y[:-1])
    with pytest.raises(ValueError, match="positive"):
        type(estimator)(alphas=[1.0, -1.0]).fit(x, y)


def test_multitask_lasso_refuses_a_single_target():
    x, y = sparse_problem(30, 5, 1)
    with pytest.raises(ValueError, match="2-D"):
        MultiTaskLassoCV().fit(x, y[:, 0])


def test_predict_before_fit_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeCV().predict(np.zeros((2, 3)))
