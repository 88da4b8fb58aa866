"""Loaders read h5ad files and the Kang release, and name the file in their errors."""

import numpy as np
import pytest

from perturbjax.data import (
    KANG_SPEC,
    SYNTHETIC_SPEC,
    DataValidationError,
    data_folder,
    load_h5ad,
    load_kang,
    validate,
)
from perturbjax.errors import PerturbjaxError

SPEC = SYNTHETIC_SPEC


def test_load_h5ad_names_the_file_in_errors(tiny_adata, tmp_path):
    path = tmp_path / "broken.h5ad"
    adata = tiny_adata.copy()
    del adata.obs["condition"]
    adata.write_h5ad(path)
    with pytest.raises(DataValidationError, match=f"{path}: obs column 'condition'"):
        load_h5ad(path, SPEC)
    with pytest.raises(FileNotFoundError, match="no such h5ad file"):
        load_h5ad(tmp_path / "absent.h5ad", SPEC)


def test_load_h5ad_round_trips_a_written_file(tiny_adata, tmp_path):
    path = tmp_path / "ok.h5ad"
    tiny_adata.write_h5ad(path)
    loaded = load_h5ad(path, SPEC, held_out=["type_2"])
    np.testing.assert_array_equal(loaded.X, tiny_adata.X)
    assert loaded.X.dtype == np.float32


def test_kang_loader_reads_the_published_valid_split(kang_path):
    adata = load_kang(kang_path.parent, splits=("valid", "train"))
    assert adata.n_obs == 1975 and adata.n_vars == 6998
    assert set(adata.obs["condition"]) == {"control", "stimulated"}
    assert adata.obs["cell_type"].nunique() == 7
    validate(adata, KANG_SPEC, held_out=["CD4T"])


def test_kang_loader_rejects_a_folder_without_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_pbmc.h5ad"):
        load_kang(tmp_path)


def test_kang_loader_concatenates_train_and_valid_files(tiny_adata, tmp_path):
    half = tiny_adata.n_obs // 2
    tiny_adata[:half].write_h5ad(tmp_path / "train_pbmc.h5ad")
    tiny_adata[half:].write_h5ad(tmp_path / "valid_pbmc.h5ad")
    both = load_kang(tmp_path)
    assert both.n_obs == tiny_adata.n_obs
    assert both.obs["split"].value_counts().to_dict() == {
        "train": half, "valid": tiny_adata.n_obs - half}
    np.testing.assert_array_equal(both.X, tiny_adata.X)
    assert load_kang(tmp_path, splits=("train",)).n_obs == half
    with pytest.raises(ValueError, match="unknown Kang splits \\['test'\\]"):
        load_kang(tmp_path, splits=("test",))


def test_a_data_folder_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(PerturbjaxError, match="no such folder .needed for the cells"):
        data_folder(str(tmp_path / "absent"), "the cells")
    assert data_folder(str(tmp_path), "the cells") == tmp_path
