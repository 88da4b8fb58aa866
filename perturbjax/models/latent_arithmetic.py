"""Latent-space arithmetic shared by scGen and scVIDR: encode cells with every trained member,
average latents per group, decode shifted latents.

These models predict in two stages: the network is trained as a plain VAE by the shared loop,
then a perturbation vector is estimated from the training pool's latents and added to the
held-out control cells' latents. Everything here runs for all (fold, seed) members at once.
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np

from perturbjax.train import FitResult, apply_members
from perturbjax.train.objective import PyTree


class LatentModel(Protocol):
    """An objective whose network encodes cells to a latent mean and decodes latents."""

    def latent(self, params: PyTree, model_state: PyTree, x: jax.Array) -> jax.Array: ...

    def decode(self, params: PyTree, model_state: PyTree, z: jax.Array) -> jax.Array: ...


def member_latents(objective: LatentModel, result: FitResult, x: np.ndarray,
                   chunk: int = 4096) -> np.ndarray:
    """(members, cells, latent): every member's latent means of the cells `x`."""
    return apply_members(objective.latent, result, np.asarray(x, np.float32), chunk)


def member_decode(objective: LatentModel, result: FitResult, z: np.ndarray,
                  chunk: int = 4096) -> np.ndarray:
    """(members, cells, genes): each member decodes its own latents `z[member]`."""
    return apply_members(objective.decode, result, np.asarray(z, np.float32), chunk,
                         per_member=True)


def group_means(latents: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted group labels, (members, groups, latent) mean latent of each group)."""
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    membership = (index[:, None] == np.arange(len(labels))).astype(latents.dtype)
    sums = np.einsum("ng,mnd->mgd", membership, latents)
    return labels, sums / membership.sum(0)[None, :, None]


def balanced_mean(latents: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(members, latent): the mean over groups of each group's mean latent.

    scGen balances cell types by upsampling each to the largest before averaging; this is
    the exact expectation of that random resampling, without its sampling noise."""
    return group_means(latents, groups)[1].mean(axis=1)
