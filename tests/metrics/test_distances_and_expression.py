import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import pearsonr

from perturbjax.metrics import distances as D
from perturbjax.metrics import penalty_ranking
from perturbjax.metrics.expression import common_degs, r2_of_means, r2_subsampled


@pytest.fixture(scope="module")
def groups():
    rng = np.random.default_rng(0)
    # Sizes that are not multiples of the 256-row chunk, so padding and masking are exercised.
    x = rng.normal(0.0, 1.0, (301, 12)).astype(np.float32)
    y = rng.normal(0.4, 1.3, (517, 12)).astype(np.float32)
    return x, y


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
    assert np.isnan(D.compare_distances(x, control, control)["euclidean_ratio"])


def test_r2_of_means_is_squared_pearson_of_gene_means(groups):
    x, y = groups
    assert r2_of_means(x, y) == pytest.approx(pearsonr(x.mean(0), y.mean(0))[0] ** 2, rel=1e-6)


def test_subsampled_r2_is_the_mean_over_draws_of_80_percent():
    rng = np.random.default_rng(1)
    real, pred = rng.random((50, 30)), rng.random((40, 30))
    draws = np.random.default_rng(5)
    expected = np.mean([
        r2_of_means(real[draws.choice(50, 40, replace=False)],
                    pred[draws.choice(40, 32, replace=False)])
        for _ in range(10)
    ])
    assert r2_subsampled(real, pred, n_draws=10, seed=5) == pytest.approx(expected)


def test_common_degs_match_a_direct_scanpy_t_test():
    rng = np.random.default_rng(2)
    genes = [f"g{i}" for i in range(200)]
    control = rng.gamma(2.0, 1.0, (60, 200))
    real = control + rng.normal(0, 0.5, control.shape) + (np.arange(200) < 40) * 2.0
    pred = control + (np.arange(200) < 25) * 1.5 + rng.normal(0, 0.5, control.shape)
    adata = ad.AnnData(np.vstack([control, real, pred]).astype(np.float32),
                       obs=pd.DataFrame({"label": ["control"] * 60 + ["real"] * 60 + ["pred"] * 60},
                                        index=[str(i) for i in range(180)]),
                       var=pd.DataFrame(index=genes))
    adata.obs["label"] = adata.obs["label"].astype("category")
    sc.tl.rank_genes_groups(adata, "label", reference="control", method="t-test", n_genes=200)
    names = adata.uns["rank_genes_groups"]["names"]
    expected = len(set(names["real"][:50]) & set(names["pred"][:50]))
    assert common_degs(control, real, pred, genes, n_top=50)["degs"] == expected
    assert expected >= 25  # the 25 genes shifted in both groups


def test_penalty_ranking_scales_each_metric_between_best_and_worst():
    rows = pd.DataFrame({
        "model": ["a", "a", "b", "b", "c", "c"],
        "r2_all": [0.9, 0.9, 0.5, 0.5, 0.7, 0.7],
        "edistance": [1.0, 1.0, 3.0, 3.0, 5.0, 5.0],
    })
    table = penalty_ranking(rows, ["r2_all", "edistance"])
    assert table.loc["a", "penalty"] == 0.0
    assert table.loc["b", "penalty"] == pytest.approx(1.0 + 0.5)
    assert table.loc["c", "penalty"] == pytest.approx(0.5 + 1.0)
    assert table.index[0] == "a" and table.loc["a", "rank"] == 1


def test_the_real_cells_as_their_own_prediction_score_perfectly():
    from perturbjax.metrics import HeldOutReference, evaluate_prediction

    rng = np.random.default_rng(3)
    control = rng.gamma(2.0, 0.5, (80, 150)).astype(np.float32)
    real = (rng.gamma(2.0, 0.5, (90, 150)) + (np.arange(150) < 30) * 1.0).astype(np.float32)
    reference = HeldOutReference.build(control, real, [f"g{i}" for i in range(150)])
    scores = evaluate_prediction(reference, real.copy(), n_top_degs=100)
    assert scores["degs"] == 100 and scores["degs_abs"] == 100
    for key in ("r2_all", "r2_top20", "r2_top100"):
        assert scores[key] == pytest.approx(1.0)
    assert scores["euclidean"] == pytest.approx(0.0, abs=1e-4)
    assert scores["edistance"] < 0.05 * evaluate_prediction(reference, control)["edistance"]
