"""Multi-dose and cross-species designs: loaders on files written in the published schemas,
and generators whose truth the data follow."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbjax.data.designs import (
    NAULT_SPEC,
    SPECIES_SPEC,
    CountFilters,
    dose_label,
    load_nault,
    load_species,
)
from perturbjax.data.schema import DataValidationError, validate
from perturbjax.data.synthetic_designs import (
    MultiDoseConfig,
    SpeciesConfig,
    hill,
    make_multidose_data,
    make_species_data,
)

SMALL_FILTERS = CountFilters(min_counts=30, min_genes=10, min_cells=3)


def _write_nault(path, rng, doses=(0.0, 0.01, 30.0)):
    """Raw counts with obs celltype / Dose, like scVIDR's nault2021_multiDose.h5ad."""
    n = 40
    counts = rng.poisson(2.0, (n * len(doses), 25)).astype(np.float32)
    counts[0] = 0  # an empty cell the filters must drop
    obs = pd.DataFrame({"celltype": np.tile(["Hepatocyte", "Kupffer"], n * len(doses) // 2),
                        "Dose": np.repeat(doses, n)},
                       index=[f"c{i}" for i in range(n * len(doses))])
    ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(25)])
               ).write_h5ad(path)
    return counts


def test_nault_loader_filters_normalises_and_labels_doses(tmp_path):
    counts = _write_nault(tmp_path / "nault.h5ad", np.random.default_rng(0))
    adata = load_nault(tmp_path / "nault.h5ad", SMALL_FILTERS)
    validate(adata, NAULT_SPEC)
    assert "c0" not in adata.obs_names and adata.n_obs == len(counts) - 1
    assert sorted(adata.obs["condition"].unique()) == ["0", "0.01", "30"]
    row = adata.obs_names.get_loc("c1")
    raw = counts[1, [int(g[1:]) for g in adata.var_names]]
    np.testing.assert_allclose(adata.X[row], np.log1p(raw / raw.sum() * 1e4), rtol=1e-5)
    np.testing.assert_array_equal(adata.layers["counts"][row], raw)


def test_nault_loader_names_the_column_of_bad_doses_and_refuses_normalised_values(tmp_path):
    rng = np.random.default_rng(1)
    _write_nault(tmp_path / "nault.h5ad", rng)
    adata = ad.read_h5ad(tmp_path / "nault.h5ad")
    adata.obs["Dose"] = adata.obs["Dose"].astype(str).replace("30.0", "high")
    adata.write_h5ad(tmp_path / "bad_dose.h5ad")
    with pytest.raises(DataValidationError, match=r"bad_dose.h5ad: obs column 'Dose' must hold"):
        load_nault(tmp_path / "bad_dose.h5ad", SMALL_FILTERS)
    adata = ad.read_h5ad(tmp_path / "nault.h5ad")
    adata.X = np.log1p(adata.X) + 0.5
    adata.write_h5ad(tmp_path / "normalised.h5ad")
    with pytest.raises(DataValidationError, match="must hold raw counts"):
        load_nault(tmp_path / "normalised.h5ad", SMALL_FILTERS)


def test_species_loader_reads_the_scgen_schema(tmp_path):
    species = make_species_data(SpeciesConfig(n_genes=30, n_response_genes=10,
                                              cells_per_group=10))
    species.write_h5ad(tmp_path / "train_species.h5ad")
    adata = load_species(tmp_path / "train_species.h5ad")
    assert sorted(adata.obs["species"].unique()) == ["mouse", "pig", "rabbit", "rat"]
    adata.obs["condition"] = adata.obs["condition"].astype(str).replace("unst", "ctrl")
    adata.write_h5ad(tmp_path / "renamed.h5ad")
    with pytest.raises(DataValidationError, match="no cell with the control value 'unst'"):
        load_species(tmp_path / "renamed.h5ad")


def test_generators_refuse_more_response_genes_than_genes():
    with pytest.raises(ValueError, match="n_response_genes"):
        MultiDoseConfig(n_genes=10, n_response_genes=20)
    with pytest.raises(ValueError, match="response genes"):
        SpeciesConfig(n_genes=10, n_response_genes=20)


def test_dose_labels_are_plain_numbers():
    assert [dose_label(d) for d in (0.0, 0.01, 0.3, 30.0)] == ["0", "0.01", "0.3", "30"]


def test_multidose_truth_is_monotone_saturating_and_types_unequal():
    config = MultiDoseConfig()
    adata = make_multidose_data(config)
    validate(adata, NAULT_SPEC)
    truth = adata.uns["truth"]
    fraction = hill(truth["doses"], truth["ec50"][:, None], truth["hill"])
    assert np.all(np.diff(fraction, axis=1) > 0) and fraction[:, -1].min() > 0.95
    assert np.all(hill(0.0, truth["ec50"], truth["hill"]) == 0)
    sizes = adata.obs.groupby("celltype", observed=True).size()
    assert sizes.max() >= 8 * sizes.min()  # rare types present
    assert adata.obs["condition"].nunique() == len(config.doses) + 1


def test_multidose_data_follow_their_dose_response():
    adata = make_multidose_data(MultiDoseConfig(n_types=3, insensitive_types=0, largest=200,
                                                smallest=150))
    truth = adata.uns["truth"]
    genes = truth["response_genes"]
    up = genes[truth["amplitude"][0, genes] > 0]
    x = adata.X[:, up]
    first = (adata.obs["celltype"] == "type_0").to_numpy()
    levels = [x[first & (adata.obs["Dose"] == d).to_numpy()].mean()
              for d in (0.0, *truth["doses"])]
    assert levels[-1] > levels[0] + 0.3  # the response is visible
    assert np.corrcoef(levels[1:], np.log(truth["doses"]))[0, 1] > 0.8  # and grows with dose


def test_species_response_is_the_shared_programme_scaled_per_species():
    adata = make_species_data(SpeciesConfig(cells_per_group=300))
    validate(adata, SPECIES_SPEC)
    truth = adata.uns["truth"]
    genes = truth["response_genes"]
    for k, name in enumerate(truth["species"]):
        part = adata[adata.obs["species"] == name]
        counts = {c: part[part.obs["condition"] == c].layers["counts"][:, genes].mean(0)
                  for c in ("unst", "LPS6")}
        observed = np.log((counts["LPS6"] + 0.1) / (counts["unst"] + 0.1))
        expected = truth["scale"][k] * truth["programme"][genes]
        assert np.corrcoef(observed, expected)[0, 1] > 0.9
