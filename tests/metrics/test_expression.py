"""R² of means, its subsampled form and the DEG overlap against scanpy."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy.stats import pearsonr

from perturbjax.metrics.expression import common_degs, r2_of_means, r2_subsampled


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
