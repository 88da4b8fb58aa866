"""Normalisation and HVGs chosen without the held-out perturbed cells."""

import numpy as np
import pytest

from perturbjax.data import (
    SYNTHETIC_SPEC,
    hold_out,
    normalize_log1p,
    select_hvgs,
)

SPEC = SYNTHETIC_SPEC


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
