"""The numpy regression path against scikit-learn's definitions (the reference library)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import linear_model as sk
from sklearn.model_selection import GroupKFold

from perturbjax.linear import RidgeCV
from tests.linear.problems import relative, sparse_problem

PROBLEMS = [(60, 20, 3), (40, 120, 4)]            # more samples than features, and fewer


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
