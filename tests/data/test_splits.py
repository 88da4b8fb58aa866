"""The hold-out protocol and the seeded, stratified validation split."""

import numpy as np

from perturbjax.data import (
    SYNTHETIC_SPEC,
    hold_out,
    stratified_validation_mask,
)

SPEC = SYNTHETIC_SPEC


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
