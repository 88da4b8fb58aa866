"""scPreGAN (Wei et al. 2022), as its published package trains it: a shared encoder, one
generator per domain and two Wasserstein critics with a gradient penalty.

The control cells (domain A) and the perturbed cells (domain B) are two unpaired sets. The
encoder E maps any cell to a 16-d latent; G_A and G_B decode a latent into domain A or B. One
training iteration (`XiajieWei/scPreGAN`, `scPreGAN/model/scPreGAN.py`, `Model.train`):
- `critic_steps` (5) critic updates, each on a fresh batch of each domain: the critics D_A, D_B
  score real cells of their domain above the translations into it (G_A(E(x_B)),
  G_B(E(x_A)), detached), plus a gradient penalty k x mean(||grad D(interpolate)||^p) with
  k = 2, p = 6 on random interpolates between real cells and translations;
- one update of E, G_A and G_B on a fresh batch of each domain: reconstruction (mean squared
  error of G_A(E(x_A)) against x_A and of G_B(E(x_B)) against x_B), latent consistency (E of
  each reconstruction and translation against the detached latent of its source) and,
  weighted by `adversarial_weight`, the critics' scores of the reconstructions, the
  translations and the cycled cells (G_A(E(G_B(E(x_A)))) and its mirror).
Here one loop step is one such iteration: a batch of (critic_steps + 1) x 64 rows of an
unpaired table (`perturbjax.models.fitting.unpaired_table`), cut into chunks of 64 (control
cell, perturbed cell) rows. Prediction: G_B(E(x_ctrl)). Layer-by-layer audit: docs/ports.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from perturbjax.models.fitting import Task, source_and_target
from perturbjax.nn.conventions import PYTORCH
from perturbjax.nn.layers import DenseBlock, Discriminator
from perturbjax.train import TrainConfig, alternating
from perturbjax.train.objective import Batch, Objective, PyTree, row_mean

# Optimiser groups, and the top-level parameter names of the last two.
ENCODER, GENERATORS, DISCRIMINATORS = "encoder", "generators", "discriminators"
GENERATOR_NAMES = ("generator_control", "generator_perturbed")
DISCRIMINATOR_NAMES = ("discriminator_control", "discriminator_perturbed")
ITERATION = "iteration"  # the optimiser state's count of finished iterations


@dataclasses.dataclass(frozen=True)
class ScPreGANConfig:
    """The published architecture (`min_hidden_size` 256, `z_dim` 16), loss weights and
    optimiser settings (`Model.train` defaults).

    The generators and critics train with the loop's Adam (`TrainConfig`: learning rate 1e-3,
    betas (0.5, 0.9)); the encoder has its own Adam at `encoder_learning_rate` with PyTorch's
    default betas, as published. Every learning rate is multiplied by `decay_factor` every
    `decay_every` iterations (one iteration: the critic steps and one generator step)."""

    encoder_hidden: tuple[int, ...] = (512, 256)
    latent: int = 16
    generator_hidden: tuple[int, ...] = (256, 512)
    discriminator_hidden: tuple[int, ...] = (512, 256)
    adversarial_weight: float = 1e-3
    reconstruction_weight: float = 1.0
    consistency_weight: float = 0.1
    critic_steps: int = 5
    gradient_penalty_weight: float = 2.0
    gradient_penalty_power: float = 6.0
    encoder_learning_rate: float = 1e-4
    decay_every: int = 10_000
    decay_factor: float = 0.9

    def __post_init__(self) -> None:
        if self.critic_steps < 1 or self.decay_every < 1:
            raise ValueError("ScPreGANConfig: critic_steps and decay_every must be at least 1")


class MLP(nn.Module):
    """Dense blocks (BatchNorm, ReLU) -> output: a plain Dense layer (the encoder), or one more
    Dense -> BatchNorm -> ReLU block (the generators' published output layer)."""

    hidden: tuple[int, ...]
    out: int
    output_block: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for width in self.hidden:
            x = DenseBlock(width, batch_norm=True, activation=nn.relu,
                           convention=PYTORCH)(x, train=train)
        if self.output_block:
            return DenseBlock(self.out, batch_norm=True, activation=nn.relu,
                              convention=PYTORCH)(x, train=train)
        return PYTORCH.dense(self.out, x.shape[-1])(x)


class Translations(NamedTuple):
    """The generator step's forward pass over a batch of each domain."""

    latent_a: jax.Array
    latent_b: jax.Array
    aa: jax.Array  # G_A(E(x_A)), the reconstruction of x_A
    ab: jax.Array  # G_B(E(x_A)), the translation of x_A
    ba: jax.Array
    bb: jax.Array
    latents: tuple[jax.Array, jax.Array, jax.Array, jax.Array]  # E(aa), E(bb), E(ba), E(ab)
    aba: jax.Array  # G_A(E(ab)), x_A there and back
    bab: jax.Array


class ScPreGAN(nn.Module):
    config: ScPreGANConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.encoder = MLP(c.encoder_hidden, c.latent)
        self.generator_control = MLP(c.generator_hidden, self.n_genes, output_block=True)
        self.generator_perturbed = MLP(c.generator_hidden, self.n_genes, output_block=True)
        critic = dict(dropout=0.0, convention=PYTORCH, activation=nn.relu)
        self.discriminator_control = Discriminator(c.discriminator_hidden, **critic)
        self.discriminator_perturbed = Discriminator(c.discriminator_hidden, **critic)

    def translate(self, x: jax.Array, *, train: bool) -> jax.Array:
        """The prediction: control cells into the perturbed domain."""
        return self.generator_perturbed(self.encoder(x, train=train), train=train)

    def cross(self, a: jax.Array, b: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(G_B(E(a)), G_A(E(b))): each domain's cells translated into the other. The encoder
        sees each domain's batch on its own, as published (BatchNorm statistics per domain)."""
        return (self.generator_perturbed(self.encoder(a, train=train), train=train),
                self.generator_control(self.encoder(b, train=train), train=train))

    def critic_control(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.discriminator_control(x, train=train)

    def critic_perturbed(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.discriminator_perturbed(x, train=train)

    def reconstruct(self, a: jax.Array, b: jax.Array, *, train: bool
                    ) -> tuple[jax.Array, jax.Array]:
        """(G_A(E(a)), G_B(E(b))): each domain through its own generator."""
        return (self.generator_control(self.encoder(a, train=train), train=train),
                self.generator_perturbed(self.encoder(b, train=train), train=train))

    def __call__(self, a: jax.Array, b: jax.Array, *, train: bool) -> Translations:
        encode, to_a, to_b = self.encoder, self.generator_control, self.generator_perturbed
        z_a, z_b = encode(a, train=train), encode(b, train=train)
        aa, ab = to_a(z_a, train=train), to_b(z_a, train=train)
        ba, bb = to_a(z_b, train=train), to_b(z_b, train=train)
        z_aa, z_ab = encode(aa, train=train), encode(ab, train=train)
        z_ba, z_bb = encode(ba, train=train), encode(bb, train=train)
        if self.is_initializing():  # create the critics' parameters
            self.critic_control(a, train=train)
            self.critic_perturbed(b, train=train)
        return Translations(z_a, z_b, aa, ab, ba, bb, (z_aa, z_bb, z_ba, z_ab),
                            to_a(z_ab, train=train), to_b(z_ba, train=train))


def gradient_penalty(score: Callable[[jax.Array], tuple[jax.Array, PyTree]], x: jax.Array,
                     weight: float, power: float) -> tuple[jax.Array, PyTree]:
    """(weight x mean over rows of ||d score / d x_row||^power, the score's auxiliary output):
    the published `calc_gradient_penalty` at the interpolates `x`."""
    def total(v: jax.Array) -> tuple[jax.Array, PyTree]:
        values, aux = score(v)
        return values.sum(), aux

    gradient, aux = jax.grad(total, has_aux=True)(x)
    norm = jnp.sqrt(jnp.sum(gradient**2, axis=-1))
    return weight * jnp.mean(norm**power), aux


def _mse(x: jax.Array, y: jax.Array) -> jax.Array:
    """PyTorch's `nn.MSELoss()`: the mean over every element."""
    return jnp.mean((x - y) ** 2)


@dataclasses.dataclass(frozen=True)
class ScPreGANObjective(Objective):
    """One published iteration per loop step, each parameter group with its own Adam state.
    Batches are rows of an unpaired table: `source_row` a control cell, `target_row` a
    perturbed cell, both into the shared `cells`."""

    weighs_validation_rows: ClassVar[bool] = True

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return source_and_target(batch)

    def _encoder_tx(self) -> optax.GradientTransformation:
        return optax.chain(optax.scale_by_adam(),
                           optax.scale(-self.module.config.encoder_learning_rate))

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        network, critics = alternating.split(params, DISCRIMINATOR_NAMES)
        encoder, generators = alternating.split(network, GENERATOR_NAMES)
        return {ENCODER: self._encoder_tx().init(encoder), GENERATORS: tx.init(generators),
                DISCRIMINATORS: tx.init(critics), ITERATION: jnp.zeros((), jnp.int32)}

    def _critic_loss(self, critics: PyTree, network: PyTree, model_state: PyTree,
                     a: jax.Array, b: jax.Array, key: jax.Array) -> tuple[jax.Array, PyTree]:
        """Wasserstein critic loss of both critics on one batch of each domain, with the
        gradient penalty at interpolates between real cells and translations."""
        c = self.module.config
        params = {**network, **critics}
        (ab, ba), state = self.apply_train(params, model_state, key, a, b, method="cross")
        ab, ba = jax.lax.stop_gradient(ab), jax.lax.stop_gradient(ba)
        alpha_a, alpha_b = jax.random.uniform(jax.random.fold_in(key, 1), (2, len(a), 1))
        loss = 0.0
        for method, real, fake, alpha in (("critic_control", a, ba, alpha_a),
                                          ("critic_perturbed", b, ab, alpha_b)):
            score_real, state = self.apply_train(params, state, key, real, method=method)
            score_fake, state = self.apply_train(params, state, key, fake, method=method)
            penalty, state = gradient_penalty(
                functools.partial(self.apply_train, params, state, key, method=method),
                alpha * real + (1.0 - alpha) * fake, c.gradient_penalty_weight,
                c.gradient_penalty_power)
            loss = loss - score_real.mean() + score_fake.mean() + penalty
        return loss, state

    def _network_loss(self, network: PyTree, critics: PyTree, model_state: PyTree,
                      a: jax.Array, b: jax.Array, key: jax.Array) -> tuple[jax.Array, PyTree]:
        """Reconstruction + latent consistency + the critics' (negated) scores of every
        generated cell, on one batch of each domain."""
        c = self.module.config
        params = {**network, **critics}
        out, state = self.apply_train(params, model_state, key, a, b)
        scores = []
        for method, cells in (("critic_control", (out.aa, out.ba, out.aba)),
                              ("critic_perturbed", (out.bb, out.ab, out.bab))):
            for x in cells:
                score, state = self.apply_train(params, state, key, x, method=method)
                scores.append(-score.mean())
        z_a, z_b = jax.lax.stop_gradient(out.latent_a), jax.lax.stop_gradient(out.latent_b)
        z_aa, z_bb, z_ba, z_ab = out.latents
        consistency = _mse(z_aa, z_a) + _mse(z_bb, z_b) + _mse(z_ba, z_b) + _mse(z_ab, z_a)
        loss = (c.adversarial_weight * sum(scores)
                + c.reconstruction_weight * (_mse(out.aa, a) + _mse(out.bb, b))
                + c.consistency_weight * consistency)
        return loss, state

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: optax.GradientTransformation, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        c = self.module.config
        a, b = source_and_target(batch)
        draws = c.critic_steps + 1
        if len(a) % draws:
            raise ValueError(f"scPreGAN: the batch size ({len(a)}) must be a multiple of "
                             f"critic_steps + 1 = {draws}: one iteration is {c.critic_steps} "
                             "critic batches and one generator batch")
        a, b = a.reshape(draws, -1, a.shape[-1]), b.reshape(draws, -1, b.shape[-1])
        keys = jax.random.split(key, draws)
        iteration = opt_state[ITERATION]
        # PyTorch's loop multiplies every learning rate by decay_factor at iterations
        # decay_every, 2 x decay_every, ... (counted from 1) before that iteration's updates.
        decay = c.decay_factor ** ((iteration + 1) // c.decay_every).astype(jnp.float32)

        def scaled(updates: PyTree) -> PyTree:
            return jax.tree_util.tree_map(lambda u: u * decay, updates)

        def step(update: optax.GradientTransformation, grads: PyTree, state: PyTree,
                 group: PyTree) -> tuple[PyTree, PyTree]:
            updates, state = update.update(grads, state, group)
            return optax.apply_updates(group, scaled(updates)), state

        network, critics = alternating.split(params, DISCRIMINATOR_NAMES)

        def critic_step(carry: tuple, xs: tuple) -> tuple[tuple, None]:
            critics, critic_opt, model_state = carry
            grads, model_state = jax.grad(self._critic_loss, has_aux=True)(
                critics, network, model_state, *xs)
            critics, critic_opt = step(tx, grads, critic_opt, critics)
            return (critics, critic_opt, model_state), None

        (critics, critic_opt, model_state), _ = jax.lax.scan(
            critic_step, (critics, opt_state[DISCRIMINATORS], model_state),
            (a[:-1], b[:-1], keys[:-1]))

        (loss, model_state), grads = jax.value_and_grad(self._network_loss, has_aux=True)(
            network, critics, model_state, a[-1], b[-1], keys[-1])
        encoder_grads, generator_grads = alternating.split(grads, GENERATOR_NAMES)
        encoder, generators = alternating.split(network, GENERATOR_NAMES)
        encoder, encoder_opt = step(self._encoder_tx(), encoder_grads, opt_state[ENCODER],
                                    encoder)
        generators, generator_opt = step(tx, generator_grads, opt_state[GENERATORS],
                                         generators)
        return ({**encoder, **generators, **critics}, model_state,
                {ENCODER: encoder_opt, GENERATORS: generator_opt,
                 DISCRIMINATORS: critic_opt, ITERATION: iteration + 1}, loss)

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Reconstruction error of each domain through its own generator (eval mode)."""
        a, b = source_and_target(batch)
        aa, bb = self.apply_eval(params, model_state, a, b, method="reconstruct")
        return row_mean((aa - a) ** 2, batch) + row_mean((bb - b) ** 2, batch)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, batch["x"], method="translate")


# Batches of 64 cells per domain, (critic_steps + 1) draws per iteration. The published
# budget is 20,000 iterations; an epoch here is one pass over the unpaired table (as many rows
# as the larger domain has training cells). On Kang `valid_pbmc.h5ad` without one type's
# stimulated cells the table has ~840 rows, 2 iterations per epoch, so 20,000 iterations are
# 10,000 epochs; other data need other epochs for the same budget. The critics' losses do not
# select epochs: the last weights are kept, as published.
PUBLISHED = (
    ScPreGANConfig(),
    TrainConfig(epochs=10_000, batch_size=6 * 64, learning_rates=(1e-3,),
                adam_betas=(0.5, 0.9), patience=None, select_best=False),
)
CONFIGS = {"published": PUBLISHED}


def build(config: ScPreGANConfig, task: Task) -> ScPreGANObjective:
    """The trainable objective (conditions and contexts play no part in its losses)."""
    return ScPreGANObjective(ScPreGAN(config, task.n_genes))
