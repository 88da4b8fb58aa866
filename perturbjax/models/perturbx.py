"""PerturbX: predict a perturbation's mean effect on a cell line from a bag of its
unperturbed cells (multiple-instance regression).

Encoder phi, per cell: a concrete selector reads `n_select` genes, then two Dense layers (the
perturbation one-hot joins the selected genes) give a `latent`-dimensional z_i. The bag's z_i
are pooled (mean, or gated attention), and the decoder psi, two Dense layers on (z_bag,
one-hot), predicts the differential expression d. Pooling makes the model invariant to the
order of the bag. Loss: sum_j w_j (d_j - d_hat_j)^2 + beta sum_i ||z_i||^2, per bag.

In training, the objective draws each row's bag on the device: K control cells sampled with
replacement from the row's context, and (the paper's default) the target from an independent
K-cell bootstrap of the treated cells minus the bag's mean. The selector's temperature is
annealed by a step counter kept in the `schedule` collection, so the training loop carries it
like any model state.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from perturbjax.nn.concrete import ConcreteSelector, temperature
from perturbjax.nn.pooling import GatedAttentionPool, MeanPool
from perturbjax.train.objective import Batch, Objective, PyTree, row_mean

POOLINGS = ("mean", "attention")
TARGETS = ("bootstrap", "population")
EVAL_KEY = 0  # validation bags are the same draw every epoch


@dataclasses.dataclass(frozen=True)
class PerturbXConfig:
    """Architecture and training-objective settings (the paper's where it states them).

    Attributes:
      n_select: genes the concrete selector reads (paper: 64).
      encoder_hidden, latent: the encoder's hidden width and latent size (paper: latent 8).
      decoder_hidden: the decoder's hidden width.
      pooling: 'mean' or 'attention' (gated attention, Ilse et al. 2018).
      bag_size: K, control cells per training bag; eval_bag_size: per validation bag.
      beta: weight of the latent penalty sum_i ||z_i||^2.
      target: 'bootstrap' (paper: target re-drawn with every bag) or 'population'.
      start_temperature, end_temperature: the selector's exponential annealing.
    """

    n_select: int = 64
    encoder_hidden: int = 64
    latent: int = 8
    decoder_hidden: int = 256
    pooling: str = "mean"
    bag_size: int = 64
    eval_bag_size: int = 64
    beta: float = 1e-4
    target: str = "bootstrap"
    start_temperature: float = 10.0
    end_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got '{self.pooling}'")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got '{self.target}'")
        if min(self.n_select, self.latent, self.bag_size, self.eval_bag_size) < 1:
            raise ValueError("n_select, latent and bag sizes must be at least 1")
        if not 0 < self.end_temperature <= self.start_temperature:
            raise ValueError("temperatures must satisfy 0 < end <= start")


class PerturbX(nn.Module):
    """(bags (B, K, G), perturbation one-hot (B, P), mask (B, K)) -> (d_hat (B, G_out),
    per-cell latents (B, K, latent), pooled latents (B, latent))."""

    n_outputs: int
    config: PerturbXConfig
    total_steps: int

    def setup(self) -> None:
        self.selector = ConcreteSelector(self.config.n_select)
        self.encoder_hidden = nn.Dense(self.config.encoder_hidden)
        self.encoder_out = nn.Dense(self.config.latent)
        self.pool = (MeanPool() if self.config.pooling == "mean"
                     else GatedAttentionPool(self.config.latent * 4))
        self.decoder_hidden = nn.Dense(self.config.decoder_hidden)
        self.decoder_out = nn.Dense(self.n_outputs)
        self.step = self.variable("schedule", "step", lambda: jnp.zeros((), jnp.int32))

    def _temperature(self, train: bool) -> jax.Array:
        current = temperature(self.step.value, self.total_steps,
                              self.config.start_temperature, self.config.end_temperature)
        if train and not self.is_initializing():
            self.step.value = self.step.value + 1
        return current

    def encode_selected(self, selected: jax.Array, perturbation: jax.Array) -> jax.Array:
        """phi after the selector: selected genes (..., K, n_select) -> latents (..., K, d)."""
        p = jnp.broadcast_to(perturbation[..., None, :],
                             (*selected.shape[:-1], perturbation.shape[-1]))
        h = nn.relu(self.encoder_hidden(jnp.concatenate([selected, p], axis=-1)))
        return self.encoder_out(h)

    def __call__(self, bag: jax.Array, perturbation: jax.Array,
                 mask: jax.Array | None = None, *, train: bool
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        selected = self.selector(bag, self._temperature(train), train=train)
        z = self.encode_selected(selected, perturbation)
        pooled = self.pool(z, mask)
        h = nn.relu(self.decoder_hidden(jnp.concatenate([pooled, perturbation], axis=-1)))
        return self.decoder_out(h), z, pooled

    def pooled_from_selected(self, selected: jax.Array, perturbation: jax.Array,
                             mask: jax.Array | None = None) -> jax.Array:
        """z_bag as a function of the selected genes' values (for Shapley gene ranking)."""
        return self.pool(self.encode_selected(selected, perturbation), mask)


def draw_cells(key: jax.Array, start: jax.Array, count: jax.Array, size: int) -> jax.Array:
    """(rows, size) indices drawn uniformly with replacement from each row's block."""
    u = jax.random.uniform(key, (start.shape[0], size))
    return start[:, None] + jnp.minimum((u * count[:, None]).astype(jnp.int32),
                                        count[:, None] - 1)


@dataclasses.dataclass(frozen=True)
class PerturbXObjective(Objective):
    """Trains `PerturbX` on rows of `BagData.table()` with the cell pool as the shared
    array `cells`; optionally per-fold `gene_weights` (default uniform) and a per-gene input
    standardisation `gene_mean` / `gene_scale` (the model reads (x - mean) / scale; targets
    stay in the cells' own units)."""

    weighs_validation_rows: ClassVar[bool] = True

    config: PerturbXConfig = PerturbXConfig()
    rng_streams = ("gumbel",)

    @staticmethod
    def _bag(batch: Batch, key: jax.Array, size: int) -> jax.Array:
        """(rows, size, genes): a bootstrap sample of each row's control cells."""
        return batch["cells"][draw_cells(key, batch["control_start"], batch["control_count"],
                                         size)]

    def _target(self, batch: Batch, key: jax.Array, bag: jax.Array) -> jax.Array:
        """The paper's bootstrap target (treated sample mean - bag mean) or the population's."""
        if self.config.target == "population":
            return batch["target"]
        treated = batch["cells"][draw_cells(key, batch["treated_start"], batch["treated_count"],
                                            bag.shape[1])]
        return treated.mean(axis=1) - bag.mean(axis=1)

    @staticmethod
    def _standardised(batch: Batch, bag: jax.Array) -> jax.Array:
        if "gene_mean" not in batch:
            return bag
        return (bag - batch["gene_mean"]) / batch["gene_scale"]

    def inputs(self, batch: Batch) -> tuple[jax.Array, ...]:
        if "bag" in batch:
            return (self._standardised(batch, batch["bag"]), batch["perturbation"],
                    batch.get("mask"))
        bag = self._bag(batch, jax.random.PRNGKey(EVAL_KEY), self.config.eval_bag_size)
        return self._standardised(batch, bag), batch["perturbation"]

    def _objective(self, pred: jax.Array, z: jax.Array, target: jax.Array,
                   batch: Batch) -> jax.Array:
        weights = batch.get("gene_weights", jnp.ones(target.shape[-1], target.dtype))
        error = (weights * (target - pred) ** 2).sum(-1)
        penalty = (z ** 2).sum(axis=(-2, -1))
        return row_mean(error + self.config.beta * penalty, batch)

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             key: jax.Array) -> tuple[jax.Array, PyTree]:
        bag_key, target_key, gumbel_key = jax.random.split(key, 3)
        bag = self._bag(batch, bag_key, self.config.bag_size)
        target = self._target(batch, target_key, bag)
        (pred, z, _), model_state = self.apply_train(
            params, model_state, gumbel_key, self._standardised(batch, bag),
            batch["perturbation"])
        return self._objective(pred, z, target, batch), model_state

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        pred, z, _ = self.apply_eval(params, model_state, *self.inputs(batch))
        return self._objective(pred, z, batch["target"], batch)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """d_hat for full bags (`BagData.full_bags`): every control cell, masked padding."""
        return self.apply_eval(params, model_state, *self.inputs(batch))[0]

    def latents(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Pooled latents z_bag of full bags (rows, latent)."""
        return self.apply_eval(params, model_state, *self.inputs(batch))[2]


def build(config: PerturbXConfig, n_genes: int, total_steps: int) -> PerturbXObjective:
    """The objective for `n_genes` outputs, annealing the selector over `total_steps`."""
    return PerturbXObjective(PerturbX(n_genes, config, total_steps), config)
