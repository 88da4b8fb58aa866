"""The numpy regression path against scikit-learn's definitions (the reference library)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold

from perturbjax.linear import MultiTaskLassoCV, RidgeCV, kfold
from tests.linear.problems import sparse_problem

PROBLEMS = [(60, 20, 3), (40, 120, 4)]            # more samples than features, and fewer


def test_kfold_is_sklearns_unshuffled_kfold():
    for n, k in [(10, 3), (600, 10), (37, 5)]:
        ours = kfold(n, k)
        for (train, test), (sk_train, sk_test) in zip(ours, KFold(k).split(np.zeros(n)),
                                                       strict=True):
            np.testing.assert_array_equal(train, sk_train)
            np.testing.assert_array_equal(test, sk_test)


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


def test_predict_before_fit_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeCV().predict(np.zeros((2, 3)))
