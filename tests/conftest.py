"""Shared fixtures: tiny synthetic data and the location of the real development data."""

from __future__ import annotations

import os

# The tests' programs are tiny, so XLA's optimisation passes cost far more than they save
# (a study on the tiny data: 75 s with them, 43 s without). Set before jax is imported; the
# environment carries it to the launchers and notebooks the tests start. Runs outside the
# tests compile fully optimised.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest

from perturbjax.data import SyntheticConfig, make_perturbation_data, shared_data_dir

TINY = SyntheticConfig(n_types=3, n_genes=60, cells_per_group=40, n_program_genes=10,
                       n_gated_genes=10, n_markers=5, seed=3)


@pytest.fixture(scope="session")
def tiny_adata():
    return make_perturbation_data(TINY)


@pytest.fixture(scope="session")
def kang_path():
    data = shared_data_dir()
    path = data / "kang" / "valid_pbmc.h5ad" if data else None
    if path is None or not path.is_file():
        pytest.skip("real Kang data absent: set PERTURBJAX_DATA or place ../shared/data/kang")
    return path


@pytest.fixture(scope="session")
def cellbench_counts():
    """Raw CellBench counts, cells x genes (one plate), or a skip when the data is absent."""
    import pandas as pd

    data = shared_data_dir()
    path = data / "cellbench" / "sc_celseq2_5cl_p1.count.csv.gz" if data else None
    if path is None or not path.is_file():
        pytest.skip("real CellBench data absent: set PERTURBJAX_DATA or place ../shared/data")
    counts = pd.read_csv(path, index_col=0).T
    return counts.loc[:, (counts > 0).mean() > 0.3]
