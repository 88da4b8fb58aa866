"""Validation names the file, the column and the expectation of every problem."""

import numpy as np
import pytest

from perturbjax.data import (
    SYNTHETIC_SPEC,
    DataValidationError,
    PerturbationSpec,
    validate,
)

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
