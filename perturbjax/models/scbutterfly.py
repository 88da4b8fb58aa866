"""scButterfly (Cao et al. 2024), as used for perturbation prediction: two autoencoders and a
variational translator between their latents, trained on optimal-transport pairs.

The control autoencoder (G -> 256 -> 128 -> 256 -> G) and the perturbed one
(G -> 128 -> 128 -> 128 -> G) are pre-trained on their own cells for `pretrain_epochs`. Then a
translator maps a control latent to a Gaussian (mean / log-variance heads), and a sample of it
to a perturbed latent; it is trained, end to end with the autoencoders, to decode a control
cell's latent into its OT partner (`perturbjax.models.fitting.fit_on_pairs`: the project's
pairing, within each context), KL-weighted, while a latent discriminator tells translated
latents from the perturbed encoder's latents and the translator learns to fool it.
Prediction: decode_perturbed(translate(encode_control(x_ctrl))).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from perturbjax.models.fitting import source_and_target
from perturbjax.nn.layers import XAVIER, Decoder, DenseBlock, Discriminator, Encoder
from perturbjax.train import alternating
from perturbjax.train.loop import TrainConfig
from perturbjax.train.objective import Batch, Objective, PyTree

DISCRIMINATOR = "discriminator"


@dataclasses.dataclass(frozen=True)
class ScButterflyConfig:
    """The published layer sizes and schedule (100 pre-training epochs, 200 translator ones
    in the `TrainConfig`); the loss weights of the translator phase."""

    control_hidden: tuple[int, ...] = (256,)
    perturbed_hidden: tuple[int, ...] = (128,)
    latent: int = 128
    translator_hidden: int = 128
    dropout: float = 0.1
    kl_weight: float = 1e-3
    adversarial_weight: float = 0.01
    pretrain_epochs: int = 100


class Outputs(NamedTuple):
    control_reconstruction: jax.Array
    perturbed_reconstruction: jax.Array
    translation: jax.Array
    translated_latent: jax.Array
    perturbed_latent: jax.Array
    kl: jax.Array


class Translator(nn.Module):
    """latent -> DenseBlock -> Gaussian (mean, log-variance) -> sample -> DenseBlock -> latent."""

    hidden: int
    latent: int

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(translated latent, KL per cell); evaluation translates the mean."""
        h = DenseBlock(self.hidden, batch_norm=True)(z, train=train)
        mean = nn.Dense(self.hidden, kernel_init=XAVIER, name="mean")(h)
        log_variance = nn.Dense(self.hidden, kernel_init=XAVIER, name="log_variance")(h)
        kl = 0.5 * jnp.sum(jnp.exp(log_variance) + mean**2 - 1.0 - log_variance, axis=-1)
        if train:
            noise = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
            mean = mean + jnp.exp(0.5 * log_variance) * noise
        h = DenseBlock(self.hidden, batch_norm=True)(mean, train=train)
        return nn.Dense(self.latent, kernel_init=XAVIER)(h), kl


class ScButterfly(nn.Module):
    config: ScButterflyConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.control_encoder = Encoder(c.control_hidden, c.latent, dropout=c.dropout)
        self.control_decoder = Decoder(tuple(reversed(c.control_hidden)), self.n_genes,
                                       dropout=c.dropout, film_mode=None)
        self.perturbed_encoder = Encoder(c.perturbed_hidden, c.latent, dropout=c.dropout)
        self.perturbed_decoder = Decoder(tuple(reversed(c.perturbed_hidden)), self.n_genes,
                                         dropout=c.dropout, film_mode=None)
        self.translator = Translator(c.translator_hidden, c.latent)
        self.discriminator = Discriminator((c.latent,), 0.0)

    def predict(self, x: jax.Array, *, train: bool) -> jax.Array:
        z, _ = self.translator(self.control_encoder(x, train=train), train=train)
        return self.perturbed_decoder(z, train=train)

    def discriminate(self, z: jax.Array, *, train: bool) -> jax.Array:
        return self.discriminator(z, train=train)

    def __call__(self, control: jax.Array, perturbed: jax.Array, *, train: bool) -> Outputs:
        z_control = self.control_encoder(control, train=train)
        z_perturbed = self.perturbed_encoder(perturbed, train=train)
        translated, kl = self.translator(z_control, train=train)
        if self.is_initializing():
            self.discriminate(z_perturbed, train=train)
        return Outputs(self.control_decoder(z_control, train=train),
                       self.perturbed_decoder(z_perturbed, train=train),
                       self.perturbed_decoder(translated, train=train),
                       translated, z_perturbed, kl)


@dataclasses.dataclass(frozen=True)
class ScButterflyObjective(Objective):
    """Training on a pair table (`source_row`, `target_row` into the shared `cells`). Before
    `pretrain_epochs` only the autoencoders' reconstruction counts; afterwards the
    translation, its KL and the fooling loss are added, and the latent discriminator trains
    after each network step, with its own Adam state."""

    control_code: int = 0
    rng_streams: ClassVar[tuple[str, ...]] = ("dropout", "latent")

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return source_and_target(batch)

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        network, critic = alternating.split(params, [DISCRIMINATOR])
        return {"network": tx.init(network), DISCRIMINATOR: tx.init(critic)}

    def _losses(self, out: Outputs, control: jax.Array, perturbed: jax.Array,
                is_pair: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(reconstruction of both autoencoders, translation error + weighted KL) per batch;
        rows that map a control cell to itself train only the control autoencoder."""
        def mse(a, b):
            return jnp.mean((a - b) ** 2, axis=-1)

        weights = is_pair.astype(control.dtype)
        n_pairs = jnp.maximum(weights.sum(), 1.0)
        reconstruction = (mse(out.control_reconstruction, control).mean()
                          + (mse(out.perturbed_reconstruction, perturbed) * weights).sum()
                          / n_pairs)
        translation = ((mse(out.translation, perturbed)
                        + self.module.config.kl_weight * out.kl) * weights).sum() / n_pairs
        return reconstruction, translation

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: optax.GradientTransformation, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        c = self.module.config
        network_key, critic_key = jax.random.split(key)
        translating = epoch >= c.pretrain_epochs
        control, perturbed = self.inputs(batch)
        is_pair = batch["condition"] != self.control_code
        network, critic = alternating.split(params, [DISCRIMINATOR])

        def network_objective(network: PyTree):
            out, state = self.apply_train({**network, **critic}, model_state, network_key,
                                          control, perturbed)
            reconstruction, translation = self._losses(out, control, perturbed, is_pair)
            logits, state = self.apply_train({**network, **critic}, state, critic_key,
                                             out.translated_latent, method="discriminate")
            fool = alternating.binary_cross_entropy(logits, 1.0, weights=is_pair)
            loss = reconstruction + jnp.where(
                translating, translation + c.adversarial_weight * fool, 0.0)
            return loss, (state, out)

        (loss, (model_state, out)), grads = jax.value_and_grad(
            network_objective, has_aux=True)(network)
        network, network_opt = alternating.update(tx, grads, opt_state["network"], network)

        real = jax.lax.stop_gradient(out.perturbed_latent)
        fake = jax.lax.stop_gradient(out.translated_latent)

        def critic_objective(critic: PyTree):
            logits, state = self.apply_train({**network, **critic}, model_state, critic_key,
                                             jnp.concatenate([real, fake]),
                                             method="discriminate")
            n = len(real)
            weights = jnp.concatenate([is_pair, is_pair])
            labels = jnp.concatenate([jnp.ones(n), jnp.zeros(n)])
            return alternating.binary_cross_entropy(logits, labels, weights=weights), state

        grads, state = jax.grad(critic_objective, has_aux=True)(critic)
        critic, critic_opt = alternating.update(tx, grads, opt_state[DISCRIMINATOR], critic,
                                                when=translating)
        model_state = alternating.keep_if(translating, state, model_state)
        return ({**network, **critic}, model_state,
                {"network": network_opt, DISCRIMINATOR: critic_opt}, loss)

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Translation error of the validation pairs (reconstruction of the control cells
        where there are none)."""
        control, perturbed = self.inputs(batch)
        out = self.apply_eval(params, model_state, control, perturbed)
        is_pair = batch["condition"] != self.control_code
        reconstruction, translation = self._losses(out, control, perturbed, is_pair)
        return jnp.where(is_pair.any(), translation, reconstruction)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, batch["x"], method="predict")


PUBLISHED = (
    ScButterflyConfig(),
    # 100 pre-training + 200 translator epochs, Adam 1e-3, batch 64; the last epoch is kept
    # (validation losses of the two phases are not comparable).
    TrainConfig(epochs=300, batch_size=64, learning_rates=(1e-3,), patience=None,
                select_best=False),
)
CONFIGS = {"default": PUBLISHED, "thesis": PUBLISHED}


def build(config: ScButterflyConfig, n_genes: int, labels: tuple[str, ...], control: str,
          n_train: int | None = None, n_contexts: int = 0) -> ScButterflyObjective:
    """The trainable objective (trained on pairs; contexts are not read)."""
    if control not in labels:
        raise ValueError(f"the control condition '{control}' is not among {list(labels)}")
    return ScButterflyObjective(ScButterfly(config, n_genes),
                                control_code=labels.index(control))
