"""The synthetic generator: seeded, log-normalised, with responses that differ by type."""

import numpy as np

from perturbjax.data import (
    SyntheticConfig,
    make_perturbation_data,
)
from tests.conftest import TINY


def test_synthetic_data_is_deterministic_per_seed():
    a, b = make_perturbation_data(TINY), make_perturbation_data(TINY)
    np.testing.assert_array_equal(a.X, b.X)
    c = make_perturbation_data(SyntheticConfig(**{**TINY.__dict__, "seed": 4}))
    assert not np.array_equal(a.X, c.X)


def test_synthetic_x_is_log1p_of_normalized_counts(tiny_adata):
    counts = tiny_adata.layers["counts"]
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(tiny_adata.X, expected, rtol=1e-5, atol=1e-5)


def test_synthetic_response_differs_by_type_beyond_the_mean_shift():
    adata = make_perturbation_data(SyntheticConfig(seed=0))
    effect = adata.uns["truth"]["effect"]
    responders = np.union1d(adata.uns["truth"]["program_genes"], adata.uns["truth"]["gated_genes"])
    silent = np.setdiff1d(np.arange(adata.n_vars), responders)
    assert np.abs(effect[:, silent]).max() == 0
    # Each type's response deviates from the average of the other types' responses.
    for t in range(effect.shape[0]):
        others = np.delete(effect, t, axis=0).mean(0)
        gap = np.abs(effect[t, responders] - others[responders]).mean()
        assert gap > 0.1 * np.abs(effect[t, responders]).mean()
    # The observed log-expression change follows the true effect.
    types = adata.obs["cell_type"].astype(str).to_numpy()
    stim = (adata.obs["condition"] == "stimulated").to_numpy()
    first = types == "type_0"
    observed = adata.X[first & stim].mean(0) - adata.X[first & ~stim].mean(0)
    assert np.corrcoef(observed[responders], effect[0, responders])[0, 1] > 0.8
