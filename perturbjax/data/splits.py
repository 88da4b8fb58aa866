"""The hold-out protocol and the seeded, stratified validation split."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anndata as ad
import numpy as np

from perturbjax.data.schema import PerturbationSpec, validate


@dataclasses.dataclass(frozen=True)
class HoldOut:
    """One out-of-distribution task: learn from `train`, predict `truth` from `control`.

    `train` is every cell except the held-out context's perturbed cells (its control cells
    stay in); `control` are the held-out context's control cells, the input of every model;
    `truth` are its perturbed cells.
    """

    context: str
    train: ad.AnnData
    control: ad.AnnData
    truth: ad.AnnData


def is_control(adata: ad.AnnData, spec: PerturbationSpec) -> np.ndarray:
    """Boolean mask of the control cells."""
    return (adata.obs[spec.condition_key].astype(str) == str(spec.control_value)).to_numpy()


def hold_out_mask(adata: ad.AnnData, spec: PerturbationSpec,
                  contexts: Sequence[str]) -> np.ndarray:
    """The cells no model may train on when `contexts` are held out: their perturbed cells
    (their control cells stay in the training pool, as the input of every prediction). The
    one statement of the hold-out rule."""
    in_held = adata.obs[spec.context_key].astype(str).isin(list(contexts)).to_numpy()
    return in_held & ~is_control(adata, spec)


def hold_out(adata: ad.AnnData, spec: PerturbationSpec, context: str) -> HoldOut:
    """Split `adata` for held-out `context` following the benchmark protocol."""
    validate(adata, spec, held_out=context, source=adata.uns.get("source"))
    in_context = (adata.obs[spec.context_key].astype(str) == context).to_numpy()
    held_perturbed = hold_out_mask(adata, spec, [context])
    if not held_perturbed.any():
        raise ValueError(
            f"held-out context '{context}' has no perturbed cells to compare predictions with"
        )
    return HoldOut(
        context=context,
        train=adata[~held_perturbed].copy(),
        control=adata[in_context & is_control(adata, spec)].copy(),
        truth=adata[held_perturbed].copy(),
    )


def stratified_validation_mask(
    adata: ad.AnnData, spec: PerturbationSpec, fraction: float, seed: int
) -> np.ndarray:
    """A seeded random validation mask, `fraction` of each (context, condition) group.

    Each group keeps at least one training cell; groups of one cell stay in training.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    groups = (adata.obs[spec.context_key].astype(str) + "\x00"
              + adata.obs[spec.condition_key].astype(str)).to_numpy()
    mask = np.zeros(adata.n_obs, dtype=bool)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        n_val = min(int(round(fraction * members.size)), members.size - 1)
        mask[rng.choice(members, n_val, replace=False)] = True
    return mask
