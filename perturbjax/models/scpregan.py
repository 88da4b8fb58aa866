"""scPreGAN (Wei et al. 2022): a shared encoder, one generator per condition and two
spectral-norm discriminators with cell-type heads.

The control cells (domain A) and the perturbed cells (domain B) of a mini-batch are encoded by
one encoder E into a 16-d latent. G_A and G_B decode any latent into the control or the
perturbed domain. Per batch:
- the discriminators D_A, D_B learn real cells of their domain from the translations into it
  (G_A(E(x_B)), G_B(E(x_A)), detached), and their auxiliary heads learn the cells' types;
- E, G_A, G_B minimise reconstruction (G_A(E(x_A)) ~ x_A, G_B(E(x_B)) ~ x_B), latent
  consistency (E(translation) ~ E(x)) and, weighted by `adversarial_weight`, the fooling
  loss of both discriminators with the source cell's type on the auxiliary heads.
Batches are drawn from the shared training pool, so a batch's two domains are unpaired, as in
the published sampler. Prediction: G_B(E(x_ctrl)).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from perturbjax.nn.layers import XAVIER, DenseBlock, Discriminator
from perturbjax.train import alternating
from perturbjax.train.loop import TrainConfig
from perturbjax.train.objective import Batch, Objective, PyTree

# Optimiser groups, and the top-level parameter names of the last two.
ENCODER, GENERATORS, DISCRIMINATORS = "encoder", "generators", "discriminators"
GENERATOR_NAMES = ("generator_control", "generator_perturbed")
DISCRIMINATOR_NAMES = ("discriminator_control", "discriminator_perturbed")


@dataclasses.dataclass(frozen=True)
class ScPreGANConfig:
    """The published architecture and loss weights.

    `encoder_learning_rate_scale`: the encoder's learning rate relative to the generators' and
    discriminators' (published: 1e-4 against 1e-3)."""

    encoder_hidden: tuple[int, ...] = (512, 256)
    latent: int = 16
    generator_hidden: tuple[int, ...] = (256, 512)
    discriminator_hidden: tuple[int, ...] = (512, 256)
    adversarial_weight: float = 1e-3
    reconstruction_weight: float = 1.0
    consistency_weight: float = 0.1
    encoder_learning_rate_scale: float = 0.1


class MLP(nn.Module):
    """DenseBlocks (LayerNorm, ReLU) -> Dense(out): scPreGAN's encoder and generators."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for width in self.hidden:
            x = DenseBlock(width, batch_norm=False, layer_norm=True,
                           activation=nn.relu)(x, train=train)
        return nn.Dense(self.out, kernel_init=XAVIER)(x)


class Translations(NamedTuple):
    """A forward pass over a batch: latents, both generators' outputs for every cell, and
    the latents of those outputs (for the consistency loss)."""

    latent: jax.Array
    to_control: jax.Array
    to_perturbed: jax.Array
    latent_of_control: jax.Array
    latent_of_perturbed: jax.Array


class ScPreGAN(nn.Module):
    config: ScPreGANConfig
    n_genes: int
    n_contexts: int

    def setup(self) -> None:
        c = self.config
        self.encoder = MLP(c.encoder_hidden, c.latent)
        self.generator_control = MLP(c.generator_hidden, self.n_genes)
        self.generator_perturbed = MLP(c.generator_hidden, self.n_genes)
        self.discriminator_control = Discriminator(c.discriminator_hidden, 0.0, self.n_contexts)
        self.discriminator_perturbed = Discriminator(c.discriminator_hidden, 0.0,
                                                     self.n_contexts)

    def translate(self, x: jax.Array, *, train: bool) -> jax.Array:
        """The prediction: control cells into the perturbed domain."""
        return self.generator_perturbed(self.encoder(x, train=train), train=train)

    def discriminate(self, to_control: jax.Array, to_perturbed: jax.Array, *, train: bool
                     ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """((logit, type logits) of D_A on `to_control`, the same of D_B on `to_perturbed`)."""
        return (self.discriminator_control(to_control, train=train),
                self.discriminator_perturbed(to_perturbed, train=train))

    def __call__(self, x: jax.Array, *, train: bool) -> Translations:
        z = self.encoder(x, train=train)
        to_control = self.generator_control(z, train=train)
        to_perturbed = self.generator_perturbed(z, train=train)
        if self.is_initializing():  # create the discriminators' parameters
            self.discriminate(to_control, to_perturbed, train=train)
        return Translations(z, to_control, to_perturbed,
                            self.encoder(to_control, train=train),
                            self.encoder(to_perturbed, train=train))


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of per-row `values` over the rows where `mask` holds (0 if none)."""
    mask = mask.astype(values.dtype)
    return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def _type_loss(type_logits: jax.Array, types: jax.Array, mask: jax.Array) -> jax.Array:
    losses = optax.softmax_cross_entropy_with_integer_labels(type_logits, types)
    return _masked_mean(losses, mask)


@dataclasses.dataclass(frozen=True)
class ScPreGANObjective(Objective):
    """Alternating discriminator / encoder-generator updates inside the scanned epoch, each
    parameter group with its own Adam state. Batches need `x`, `condition` and `context`."""

    control_code: int = 0

    def inputs(self, batch: Batch) -> tuple[jax.Array]:
        return (batch["x"],)

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        network, critics = alternating.split(params, DISCRIMINATOR_NAMES)
        encoder, generators = alternating.split(network, GENERATOR_NAMES)
        return {ENCODER: self._encoder_tx(tx).init(encoder), GENERATORS: tx.init(generators),
                DISCRIMINATORS: tx.init(critics)}

    def _encoder_tx(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        # Adam's step is invariant to the gradient's scale, so scaling its output scales the
        # learning rate: the encoder's is `encoder_learning_rate_scale` x the others'.
        return optax.chain(tx, optax.scale(self.module.config.encoder_learning_rate_scale))

    def _reconstruction(self, out: Translations, x: jax.Array,
                        is_control: jax.Array) -> jax.Array:
        """Each cell through the generator of its own domain, squared error per row."""
        own = jnp.where(is_control[:, None], out.to_control, out.to_perturbed)
        return jnp.mean((own - x) ** 2, axis=-1)

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: optax.GradientTransformation, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        c = self.module.config
        forward_key, critic_key, fool_key = jax.random.split(key, 3)
        x, types = batch["x"], batch["context"]
        is_control = batch["condition"] == self.control_code
        network, critics = alternating.split(params, DISCRIMINATOR_NAMES)
        fakes = jax.lax.stop_gradient(self.apply_train(params, model_state, forward_key, x)[0])

        def critic_objective(critics: PyTree):
            # Real cells of a domain, the translations into it from the other domain.
            inputs = (jnp.concatenate([x, fakes.to_control]),
                      jnp.concatenate([x, fakes.to_perturbed]))
            ((logit_a, types_a), (logit_b, types_b)), state = self.apply_train(
                {**network, **critics}, model_state, critic_key, *inputs,
                method="discriminate")
            n = len(x)
            real_a, fake_a = is_control, ~is_control  # translations of perturbed cells
            real_b, fake_b = ~is_control, is_control
            bce = optax.sigmoid_binary_cross_entropy
            loss = (_masked_mean(bce(logit_a[:n], 1.0), real_a)
                    + _masked_mean(bce(logit_a[n:], 0.0), fake_a)
                    + _masked_mean(bce(logit_b[:n], 1.0), real_b)
                    + _masked_mean(bce(logit_b[n:], 0.0), fake_b)
                    + _type_loss(types_a[:n], types, real_a)
                    + _type_loss(types_b[:n], types, real_b))
            return loss, state

        grads, model_state = jax.grad(critic_objective, has_aux=True)(critics)
        critics, critic_opt = alternating.update(tx, grads, opt_state[DISCRIMINATORS], critics)

        def network_objective(network: PyTree):
            out, state = self.apply_train({**network, **critics}, model_state, forward_key, x)
            ((logit_a, types_a), (logit_b, types_b)), state = self.apply_train(
                {**network, **critics}, state, fool_key, out.to_control, out.to_perturbed,
                method="discriminate")
            bce = optax.sigmoid_binary_cross_entropy
            fool = (_masked_mean(bce(logit_a, 1.0), ~is_control)
                    + _masked_mean(bce(logit_b, 1.0), is_control)
                    + _type_loss(types_a, types, ~is_control)
                    + _type_loss(types_b, types, is_control))
            consistency = jnp.where(is_control[:, None], out.latent_of_perturbed,
                                    out.latent_of_control) - out.latent
            loss = (c.reconstruction_weight * self._reconstruction(out, x, is_control).mean()
                    + c.consistency_weight * jnp.mean(consistency**2)
                    + c.adversarial_weight * fool)
            return loss, state

        (loss, model_state), grads = jax.value_and_grad(network_objective, has_aux=True)(
            network)
        encoder_grads, generator_grads = alternating.split(grads, GENERATOR_NAMES)
        encoder, generators = alternating.split(network, GENERATOR_NAMES)
        encoder, encoder_opt = alternating.update(self._encoder_tx(tx), encoder_grads,
                                                  opt_state[ENCODER], encoder)
        generators, generator_opt = alternating.update(tx, generator_grads,
                                                       opt_state[GENERATORS], generators)
        return ({**encoder, **generators, **critics}, model_state,
                {ENCODER: encoder_opt, GENERATORS: generator_opt, DISCRIMINATORS: critic_opt},
                loss)

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Reconstruction error of each cell through its own domain's generator."""
        out = self.apply_eval(params, model_state, batch["x"])
        is_control = batch["condition"] == self.control_code
        return self._reconstruction(out, batch["x"], is_control).mean()

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, batch["x"], method="translate")


PUBLISHED = (
    ScPreGANConfig(),
    # 20,000 iterations of 64 cells; Adam (0.5, 0.9), lr x 0.9 every 10,000 iterations. On a
    # training pool of ~13,000 cells (Kang without one type's stimulated cells) 20,000
    # iterations are ~100 epochs. GAN losses do not select epochs: the last one is kept.
    TrainConfig(epochs=100, batch_size=64, learning_rates=(1e-3,), adam_betas=(0.5, 0.9),
                decay_every=10_000, decay_factor=0.9, patience=None, select_best=False),
)
CONFIGS = {"default": PUBLISHED, "thesis": PUBLISHED}


def build(config: ScPreGANConfig, n_genes: int, labels: tuple[str, ...], control: str,
          n_train: int | None = None, n_contexts: int = 0) -> ScPreGANObjective:
    """The trainable objective; `n_contexts` sizes the discriminators' cell-type heads."""
    if n_contexts < 1:
        raise ValueError("scPreGAN needs n_contexts >= 1 for its cell-type heads")
    if control not in labels:
        raise ValueError(f"the control condition '{control}' is not among {list(labels)}")
    return ScPreGANObjective(ScPreGAN(config, n_genes, n_contexts),
                             control_code=labels.index(control))
