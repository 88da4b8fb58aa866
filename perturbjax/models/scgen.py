"""scGen (Lotfollahi et al. 2019): a VAE of expression and latent vector arithmetic.

The network is the published package's (`scgen` 2.1.0 on scvi-tools 0.19): an encoder of
`n_layers` blocks of `n_hidden` units (Dense, BatchNorm, LeakyReLU, dropout; scvi-tools'
`FCLayers`) to Gaussian mean / variance heads (variance = exp(head) + 1e-4), and a decoder of
`n_layers` such blocks followed by a plain Dense layer to the genes (`DecoderSCGEN`), with
scvi-tools' initialisation and BatchNorm constants (`SCVI_TOOLS`). Loss per cell: 0.5 x squared
error summed over genes + 0.5 x kl_weight x KL, averaged over the batch. The layer-by-layer
audit against the published code is in docs/ports.md.

Prediction: delta = mean latent of the perturbed cells - mean latent of the control cells over
the training pool, each mean taken over cell types equally (scGen's balancing), and the
held-out control cells decode from z + delta.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import anndata as ad
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.models.fitting import Task, TrainingPool
from perturbjax.models.latent_arithmetic import balanced_mean, member_decode, member_latents
from perturbjax.nn.conventions import SCVI_TOOLS
from perturbjax.nn.layers import Decoder, Encoder
from perturbjax.train import FitResult, TrainConfig
from perturbjax.train.objective import Batch, Objective, PyTree, row_mean


@dataclasses.dataclass(frozen=True)
class ScGenConfig:
    """The published scGen network (`scgen.SCGEN` defaults, dropout as in its tutorials)."""

    n_hidden: int = 800
    n_layers: int = 2
    latent: int = 100
    dropout: float = 0.2
    kl_weight: float = 5e-5
    variance_epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_hidden < 1 or self.latent < 1:
            raise ValueError("ScGenConfig: n_layers, n_hidden and latent must be at least 1")


class ScGenVAE(nn.Module):
    """x -> Gaussian latent (mean, variance) -> x_hat."""

    config: ScGenConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder((c.n_hidden,) * c.n_layers, c.latent, batch_norm=True,
                               dropout=c.dropout, variational=True, convention=SCVI_TOOLS)
        self.decoder = Decoder((c.n_hidden,) * c.n_layers, self.n_genes, batch_norm=True,
                               dropout=c.dropout, film_mode=None, convention=SCVI_TOOLS)

    def encode(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(mean, variance) of the latent Gaussian."""
        mean, log_variance = self.encoder(x, train=train)
        return mean, jnp.exp(log_variance) + self.config.variance_epsilon

    def decode(self, z: jax.Array, *, train: bool) -> jax.Array:
        return self.decoder(z, train=train)

    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(reconstruction, KL per cell); training decodes a sample, evaluation the mean."""
        mean, variance = self.encode(x, train=train)
        # Written out, not `nn.layers.gaussian_kl`: through the helper XLA compiles scGen's
        # step differently and the trained weights move in the last bits (measured).
        kl = 0.5 * jnp.sum(variance + mean**2 - 1.0 - jnp.log(variance), axis=-1)
        z = mean
        if train:
            z = mean + jnp.sqrt(variance) * jax.random.normal(self.make_rng("latent"),
                                                              mean.shape, mean.dtype)
        return self.decode(z, train=train), kl


@dataclasses.dataclass(frozen=True)
class ScGenObjective(Objective):
    """scGen's ELBO-like loss on batches of cells (`x`); conditions are not seen in training."""

    weighs_validation_rows: ClassVar[bool] = True

    kl_weight: float = 5e-5
    rng_streams: ClassVar[tuple[str, ...]] = ("dropout", "latent")

    def inputs(self, batch: Batch) -> tuple[jax.Array]:
        return (batch["x"],)

    def _loss(self, reconstruction: jax.Array, kl: jax.Array, batch: Batch) -> jax.Array:
        squared_error = jnp.sum((reconstruction - batch["x"]) ** 2, axis=-1)
        return row_mean(0.5 * squared_error + 0.5 * self.kl_weight * kl, batch)

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             key: jax.Array) -> tuple[jax.Array, PyTree]:
        (reconstruction, kl), model_state = self.apply_train(params, model_state, key,
                                                             batch["x"])
        return self._loss(reconstruction, kl, batch), model_state

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        reconstruction, kl = self.apply_eval(params, model_state, batch["x"])
        return self._loss(reconstruction, kl, batch)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """The reconstruction of the cells (decoded latent means)."""
        return self.apply_eval(params, model_state, batch["x"])[0]

    def latent(self, params: PyTree, model_state: PyTree, x: jax.Array) -> jax.Array:
        return self.apply_eval(params, model_state, x, method="encode")[0]

    def decode(self, params: PyTree, model_state: PyTree, z: jax.Array) -> jax.Array:
        return self.apply_eval(params, model_state, z, method="decode")


PUBLISHED = (
    ScGenConfig(),
    # scvi-tools' training plan: Adam lr 1e-3, eps 0.01, weight decay 1e-6; batch 32, up to
    # 100 epochs, early stopping with patience 25 on a 10% validation split, last weights.
    TrainConfig(epochs=100, batch_size=32, learning_rates=(1e-3,), adam_eps=0.01,
                weight_decay=1e-6, patience=25, select_best=False),
)
CONFIGS = {"published": PUBLISHED}


def build(config: ScGenConfig, task: Task) -> ScGenObjective:
    """The trainable objective (conditions and contexts play no part in scGen's training)."""
    return ScGenObjective(ScGenVAE(config, task.n_genes), kl_weight=config.kl_weight)


def predict(objective: ScGenObjective, result: FitResult, pool: TrainingPool,
            control: ad.AnnData, condition: str) -> list[np.ndarray]:
    """One prediction per member: decode(z(control) + balanced delta of `condition`)."""
    train, spec = pool.cells, pool.spec
    conditions = train.obs[spec.condition_key].astype(str).to_numpy()
    contexts = train.obs[spec.context_key].astype(str).to_numpy()
    perturbed, controls = conditions == condition, conditions == str(spec.control_value)
    if not perturbed.any():
        raise ValueError(f"scGen: no training cells of condition '{condition}'")
    latents = member_latents(objective, result, train.X)
    delta = (balanced_mean(latents[:, perturbed], contexts[perturbed])
             - balanced_mean(latents[:, controls], contexts[controls]))
    z = member_latents(objective, result, control.X) + delta[:, None, :]
    return list(member_decode(objective, result, z))
