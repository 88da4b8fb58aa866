"""MTAe: an autoencoder whose decoder is FiLM-modulated by the perturbation (seed 003).

The encoder is shared by all conditions; every hidden layer of the decoder carries its own
FiLM generator fed the one-hot condition. Training reconstructs each cell with its own
condition (a conditional autoencoder, as the seed code does); prediction decodes the latent
of a control cell under the perturbation's one-hot: decode(encode(x_ctrl), onehot(p)).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from perturbjax.nn.layers import Decoder, Encoder, one_hot
from perturbjax.train.loop import TrainConfig
from perturbjax.train.objective import Batch, Objective, PyTree


@dataclasses.dataclass(frozen=True)
class MTAeConfig:
    """Architecture of the FiLM autoencoder (the decoder mirrors `hidden`)."""

    hidden: tuple[int, ...] = (256,)
    latent: int = 128
    batch_norm: bool = True
    dropout: float = 0.5
    input_dropout: float = 0.2
    latent_activation: bool = False
    output_activation: bool = False
    film_mode: str = "affine"
    film_embedding: int = 0


class MTAe(nn.Module):
    """encode(x) -> z; decode(z, c) -> x_hat with FiLM(c) in every decoder hidden layer."""

    config: MTAeConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder(c.hidden, c.latent, c.batch_norm, c.dropout, c.input_dropout,
                               c.latent_activation)
        self.decoder = Decoder(tuple(reversed(c.hidden)), self.n_genes, c.batch_norm, c.dropout,
                               c.film_mode, c.film_embedding, c.output_activation)

    def encode(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.encoder(x, train=train)

    def decode(self, z: jax.Array, condition: jax.Array, *, train: bool) -> jax.Array:
        return self.decoder(z, condition, train=train)

    def __call__(self, x: jax.Array, condition: jax.Array, *, train: bool) -> jax.Array:
        return self.decode(self.encode(x, train=train), condition, train=train)


@dataclasses.dataclass(frozen=True)
class MTAeObjective(Objective):
    """Mean squared reconstruction of each cell under its own condition.

    Batches hold `x` (cells x genes) and `condition` (integer codes); for prediction,
    `condition` is the code of the perturbation to predict.
    """

    n_conditions: int = 2

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return batch["x"], one_hot(batch["condition"], self.n_conditions)

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             key: jax.Array) -> tuple[jax.Array, PyTree]:
        recon, model_state = self.apply_train(params, model_state, key, *self.inputs(batch))
        return jnp.mean((recon - batch["x"]) ** 2), model_state

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        recon = self.apply_eval(params, model_state, *self.inputs(batch))
        return jnp.mean((recon - batch["x"]) ** 2)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, *self.inputs(batch))


# The seed code as benchmarked. Its separate Adam optimisers for encoder and decoder, with equal
# settings, are one Adam here: Adam acts element-wise, so the updates are identical.
THESIS = (
    MTAeConfig(hidden=(256,), latent=128, batch_norm=True, dropout=0.5, input_dropout=0.2,
               latent_activation=True, output_activation=True, film_mode="thesis"),
    TrainConfig(epochs=400, batch_size=64, learning_rates=(1e-5,), warmup_steps=100,
                patience=None, select_best=False),
)

# The project's recommendation: identity-initialised linear FiLM, no activation on the latent,
# learning rate and epoch chosen on the validation split.
DEFAULT = (
    MTAeConfig(hidden=(256,), latent=128, batch_norm=True, dropout=0.2, input_dropout=0.2,
               latent_activation=False, output_activation=False, film_mode="affine"),
    TrainConfig(epochs=100, batch_size=64, learning_rates=(1e-3, 3e-4), warmup_steps=100,
                patience=10, select_best=True),
)

CONFIGS = {"thesis": THESIS, "default": DEFAULT}


def build(config: MTAeConfig, n_genes: int, n_conditions: int) -> MTAeObjective:
    """The trainable objective for `n_genes` genes and `n_conditions` conditions."""
    return MTAeObjective(MTAe(config, n_genes), n_conditions=n_conditions)
