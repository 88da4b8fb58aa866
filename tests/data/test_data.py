import numpy as np
import pytest

from perturbjax.data import (
    KANG_SPEC,
    SYNTHETIC_SPEC,
    DataValidationError,
    PerturbationSpec,
    SyntheticConfig,
    hold_out,
    load_h5ad,
    load_kang,
    make_perturbation_data,
    normalize_log1p,
    select_hvgs,
    stratified_validation_mask,
    validate,
)
from tests.conftest import TINY

SPEC = SYNTHETIC_SPEC


def test_valid_data_passes(tiny_adata):
    validate(tiny_adata, SPEC, held_out=["type_0"])


@pytest.mark.parametrize("key", ["cell_type", "condition"])
def test_missing_obs_column_is_named(tiny_adata, key):
    adata = tiny_adata.copy()
    del adata.obs[key]
    with pytest.raises(DataValidationError, match=f"my.h5ad: obs column '{key}' is missing"):
        validate(adata, SPEC, source="my.h5ad")


def test_absent_control_value_is_reported(tiny_adata):
    spec = PerturbationSpec("cell_type", "condition", "ctrl")
    with pytest.raises(DataValidationError, match="no cell with the control value 'ctrl'"):
        validate(tiny_adata, spec, source="f.h5ad")


def test_context_without_control_cells_is_reported(tiny_adata):
    keep = ~((tiny_adata.obs.cell_type == "type_1") & (tiny_adata.obs.condition == "control"))
    with pytest.raises(DataValidationError, match=r"contexts \['type_1'\] have no control"):
        validate(tiny_adata[keep.to_numpy()].copy(), SPEC)


def test_absent_held_out_context_is_reported(tiny_adata):
    with pytest.raises(DataValidationError, match=r"held-out contexts \['Tcell'\] are absent"):
        validate(tiny_adata, SPEC, held_out="Tcell")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_expression_is_reported(tiny_adata, bad):
    adata = tiny_adata.copy()
    adata.X[3, 4] = bad
    with pytest.raises(DataValidationError, match="X holds 1 NaN or inf"):
        validate(adata, SPEC)


def test_duplicated_gene_names_are_reported(tiny_adata):
    adata = tiny_adata.copy()
    names = adata.var_names.to_list()
    names[5] = names[4]
    adata.var_names = names
    with pytest.raises(DataValidationError, match="duplicated: \\['gene_4'\\]"):
        validate(adata, SPEC)


def test_non_numeric_dose_is_reported(tiny_adata):
    adata = tiny_adata.copy()
    adata.obs["dose"] = ["high" if i % 2 else "0" for i in range(adata.n_obs)]
    spec = PerturbationSpec("cell_type", "condition", "control", dose_key="dose")
    with pytest.raises(DataValidationError, match="'dose' must be numeric.*'high'"):
        validate(adata, spec)


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


def test_hold_out_keeps_everything_but_the_held_out_perturbed_cells(tiny_adata):
    split = hold_out(tiny_adata, SPEC, "type_1")
    assert split.train.n_obs + split.truth.n_obs == tiny_adata.n_obs
    assert set(split.truth.obs.cell_type) == {"type_1"}
    assert set(split.truth.obs.condition) == {"stimulated"}
    assert set(split.control.obs.condition) == {"control"}
    in_train = split.train.obs[split.train.obs.cell_type == "type_1"]
    assert set(in_train.condition) == {"control"}


def test_validation_split_is_seeded_and_stratified(tiny_adata):
    mask = stratified_validation_mask(tiny_adata, SPEC, 0.25, seed=7)
    np.testing.assert_array_equal(mask, stratified_validation_mask(tiny_adata, SPEC, 0.25, 7))
    assert not np.array_equal(mask, stratified_validation_mask(tiny_adata, SPEC, 0.25, 8))
    groups = tiny_adata.obs.groupby(["cell_type", "condition"], observed=True).indices
    for members in groups.values():
        assert mask[members].sum() == round(0.25 * len(members))


def test_hvg_choice_ignores_the_held_out_perturbed_cells(tiny_adata):
    split = hold_out(tiny_adata, SPEC, "type_0")
    chosen = select_hvgs(split, 20)
    scrambled = hold_out(tiny_adata, SPEC, "type_0")
    scrambled.truth.X[:] = np.random.default_rng(0).random(scrambled.truth.X.shape) * 50
    assert chosen.train.n_vars == 20
    assert list(select_hvgs(scrambled, 20).train.var_names) == list(chosen.train.var_names)
    assert list(chosen.truth.var_names) == list(chosen.train.var_names)


def test_normalize_log1p_rejects_negative_counts(tiny_adata):
    adata = tiny_adata.copy()
    adata.X = adata.layers["counts"].copy()
    adata.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative values"):
        normalize_log1p(adata)


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
