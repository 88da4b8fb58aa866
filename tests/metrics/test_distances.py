"""Every distance against its formula in float64 (scipy, NumPy)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from perturbjax.metrics import distances as D


def _within_mean(a):
    d = cdist(a, a)
    n = len(a)
    return d[np.triu_indices(n, 1)].mean()


# Pairwise terms in float32, sums in float64: every distance within 1e-6 of float64 formulas.
def test_euclidean_and_linear_mmd_match_their_formulas(groups):
    x, y = groups
    gap = x.astype(np.float64).mean(0) - y.mean(0)
    assert float(D.euclidean(x, y)) == pytest.approx(np.linalg.norm(gap), rel=1e-6)
    assert float(D.mmd_linear(x, y)) == pytest.approx(gap @ gap, rel=1e-6)


def test_mean_pairwise_matches_scipy_cdist(groups):
    x, y = groups
    assert float(D.mean_pairwise(x, y)) == pytest.approx(cdist(x, y).mean(), rel=1e-6)


def test_edistance_matches_the_energy_distance_formula(groups):
    x, y = groups
    expected = 2 * cdist(x, y).mean() - _within_mean(x) - _within_mean(y)
    assert float(D.edistance(x, y)) == pytest.approx(expected, rel=1e-6)


def test_legacy_squared_edistance_uses_squared_distances(groups):
    x, y = groups
    sq = lambda a, b: cdist(a, b, "sqeuclidean")  # noqa: E731
    within = lambda a: sq(a, a)[np.triu_indices(len(a), 1)].mean()  # noqa: E731
    expected = 2 * sq(x, y).mean() - within(x) - within(y)
    assert float(D.edistance(x, y, squared=True)) == pytest.approx(expected, rel=1e-6)


def test_edistance_is_zero_between_identical_distributions_only(groups):
    x, _ = groups
    assert abs(float(D.edistance(x[:150], x[150:]))) < 0.1
    assert float(D.edistance(x, x + 2.0)) > 1.0


@pytest.mark.parametrize("gamma", [1.0, 0.05])
def test_rbf_mmd_matches_kernel_means(groups, gamma):
    x, y = groups
    k = lambda a, b: np.exp(-gamma * cdist(a, b, "sqeuclidean"))  # noqa: E731
    expected = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert float(D.mmd_rbf(x, y, gamma=gamma)) == pytest.approx(expected, rel=1e-6)


def test_wasserstein_equals_a_numpy_log_domain_sinkhorn(groups):
    x, y = groups[0][:80].astype(np.float64), groups[1][:120].astype(np.float64)
    cost = cdist(x, y, "sqeuclidean")
    eps = 0.05 * cost.std()
    assert float(D.sinkhorn_epsilon(x, y)) == pytest.approx(eps, rel=1e-4)
    log_a, log_b = np.full(len(x), -np.log(len(x))), np.full(len(y), -np.log(len(y)))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(5000):
        f = -eps * logsumexp((g[None, :] - cost) / eps + log_b[None, :], axis=1)
        g = -eps * logsumexp((f[:, None] - cost) / eps + log_a[:, None], axis=0)
    dual = f.mean() + g.mean()  # the regularised OT cost at convergence (balanced problem)
    assert float(D.wasserstein(x, y)) == pytest.approx(dual, rel=1e-3)


def test_distance_ratio_is_real_over_control_distance(groups):
    x, y = groups
    control = x + 3.0
    out = D.compare_distances(real=x, pred=y, control=control)
    for name, distance in D.DISTANCES.items():
        assert out[f"{name}_ratio"] == pytest.approx(
            float(distance(x, y)) / float(distance(control, y)), rel=1e-4)
    itself = D.compare_distances(x, control, control)  # every ratio over float32 noise
    assert all(np.isnan(itself[f"{name}_ratio"]) for name in D.DISTANCES)
