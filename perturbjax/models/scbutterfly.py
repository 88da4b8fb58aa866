"""scButterfly (Cao et al. 2024), as its published package predicts perturbations: two
autoencoders with variational latent translators, pre-trained one after the other, then a
joint translator between their latents trained against two latent discriminators.

The published perturbation model (`BioX-NKU/scButterfly`, `scButterfly/train_model_perturb.py`,
with the layer sizes of its perturbation tutorial) treats the control cells as one modality
and the stimulated cells as another. Every layer is Linear -> BatchNorm -> LeakyReLU:
- encoders: control G -> 256 -> 128, perturbed G -> 128 -> 128, each with dropout 0.5 on its
  input and 0.1 between layers; decoders mirror them (128 -> 256 -> G, 128 -> 128 -> G);
- a single translator per modality (pre-training only) and one joint translator: Gaussian
  heads mu, log-variance on a 128-d latent, and decoders back to the encoders' 128-d space;
- a discriminator per modality on those latents: Linear -> BatchNorm -> sigmoid.
Training, on the optimal-transport pairs of control and stimulated cells of each training type
(`perturbjax.models.fitting.fit_on_pairs` without self-pairs):
1. `pretrain_epochs` epochs of the control autoencoder through its single translator
   (mean squared error + KL, the KL weight warmed up over `kl_warmup_epochs`);
2. as many of the perturbed autoencoder;
3. the rest: per batch, a discriminator step (SGD) on soft labels, real latents against the
   other modality's translations, then a step of the joint translator, encoders and decoders
   on both reconstructions, both translations and the KL, minus the discriminator loss
   while that loss is below `adversarial_threshold`.
Prediction: decode_perturbed(translator(encode_control(x_ctrl))). Each module has its own Adam
state, as published. Layer-by-layer audit: docs/ports.md.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from perturbjax.models.fitting import Task, source_and_target
from perturbjax.nn.conventions import PYTORCH_XAVIER
from perturbjax.nn.layers import DenseBlock, gaussian_kl, leaky_relu
from perturbjax.train import TrainConfig, alternating
from perturbjax.train.objective import Batch, Objective, PyTree, row_mean

CONTROL_AE = ("control_encoder", "control_decoder", "control_translator")
PERTURBED_AE = ("perturbed_encoder", "perturbed_decoder", "perturbed_translator")
JOINT = ("control_encoder", "control_decoder", "perturbed_encoder", "perturbed_decoder",
         "translator")
DISCRIMINATORS = ("control_discriminator", "perturbed_discriminator")


@dataclasses.dataclass(frozen=True)
class ScButterflyConfig:
    """The perturbation tutorial's model and `Model.train` settings.

    kl_scale: each modality's KL weight is kl_scale / n_genes (the tutorial's 20 / G), the
    joint translator's the sum of both. adversarial_weight, adversarial_threshold: the
    discriminator loss enters the generator loss with this weight while below the threshold.
    pretrain_epochs: epochs of each autoencoder's pre-training; the joint phase takes the
    rest of `TrainConfig.epochs`."""

    control_hidden: tuple[int, ...] = (256,)
    perturbed_hidden: tuple[int, ...] = (128,)
    latent: int = 128
    dropout: float = 0.1
    input_noise: float = 0.5
    kl_scale: float = 20.0
    kl_warmup_epochs: int = 50
    pretrain_epochs: int = 100
    adversarial_weight: float = 1.0
    adversarial_threshold: float = 1.35
    discriminator_learning_rate: float = 5e-3


class NetBlock(nn.Module):
    """scButterfly's `NetBlock`: [input dropout] -> (Dense -> BatchNorm -> LeakyReLU
    [-> dropout, except after the last layer]) per width."""

    widths: tuple[int, ...]
    dropout: float = 0.0
    input_noise: float = 0.0
    activation: str = "leaky_relu"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.input_noise:
            x = nn.Dropout(self.input_noise, deterministic=not train)(x)
        activation = nn.sigmoid if self.activation == "sigmoid" else leaky_relu
        for i, width in enumerate(self.widths):
            last = i == len(self.widths) - 1
            x = DenseBlock(width, batch_norm=True, dropout=0.0 if last else self.dropout,
                           activation=activation, convention=PYTORCH_XAVIER)(x, train=train)
        return x


class GaussianHeads(nn.Module):
    """(mu, log-variance), each LeakyReLU(BatchNorm(Dense(x))), and a sample in training."""

    latent: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        mu = NetBlock((self.latent,), name="mu")(x, train=train)
        log_variance = NetBlock((self.latent,), name="log_variance")(x, train=train)
        z = mu
        if train:
            noise = jax.random.normal(self.make_rng("latent"), mu.shape, mu.dtype)
            z = mu + noise * jnp.exp(0.5 * log_variance)
        return z, mu, log_variance


class SingleTranslator(nn.Module):
    """Pre-training translator of one modality: latent -> Gaussian -> back to the latent."""

    width: int

    @nn.compact
    def __call__(self, h: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        z, mu, log_variance = GaussianHeads(self.width, name="heads")(h, train=train)
        return NetBlock((h.shape[-1],), name="decoder")(z, train=train), mu, log_variance


class JointTranslator(nn.Module):
    """One Gaussian embedding per input modality, decoded into both modalities' latents."""

    width: int
    control_width: int
    perturbed_width: int

    def setup(self) -> None:
        self.from_control = GaussianHeads(self.width)
        self.from_perturbed = GaussianHeads(self.width)
        self.to_control = NetBlock((self.control_width,))
        self.to_perturbed = NetBlock((self.perturbed_width,))

    def __call__(self, h: jax.Array, source: str, *, train: bool
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(to control, to perturbed, mu, log-variance) of latents `h` of modality `source`."""
        heads = self.from_control if source == "control" else self.from_perturbed
        z, mu, log_variance = heads(h, train=train)
        return (self.to_control(z, train=train), self.to_perturbed(z, train=train), mu,
                log_variance)


class ScButterfly(nn.Module):
    config: ScButterflyConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.control_encoder = NetBlock((*c.control_hidden, c.latent), c.dropout,
                                        c.input_noise)
        self.control_decoder = NetBlock((*reversed(c.control_hidden), self.n_genes),
                                        c.dropout)
        self.perturbed_encoder = NetBlock((*c.perturbed_hidden, c.latent), c.dropout,
                                          c.input_noise)
        self.perturbed_decoder = NetBlock((*reversed(c.perturbed_hidden), self.n_genes),
                                          c.dropout)
        self.control_translator = SingleTranslator(c.latent)
        self.perturbed_translator = SingleTranslator(c.latent)
        self.translator = JointTranslator(c.latent, c.latent, c.latent)
        self.control_discriminator = NetBlock((1,), activation="sigmoid")
        self.perturbed_discriminator = NetBlock((1,), activation="sigmoid")

    def pretrain(self, x: jax.Array, modality: str, *, train: bool
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(reconstruction, mu, log-variance) of one modality's autoencoder and translator."""
        if modality == "control":
            encoder, translator, decoder = (self.control_encoder, self.control_translator,
                                            self.control_decoder)
        else:
            encoder, translator, decoder = (self.perturbed_encoder, self.perturbed_translator,
                                            self.perturbed_decoder)
        h, mu, log_variance = translator(encoder(x, train=train), train=train)
        return decoder(h, train=train), mu, log_variance

    def translate_latents(self, control: jax.Array, perturbed: jax.Array, *, train: bool
                          ) -> dict[str, jax.Array]:
        """Both encoders' latents and the joint translator's outputs from each."""
        r, a = (self.control_encoder(control, train=train),
                self.perturbed_encoder(perturbed, train=train))
        r2r, r2a, mu_r, log_variance_r = self.translator(r, "control", train=train)
        a2r, a2a, mu_a, log_variance_a = self.translator(a, "perturbed", train=train)
        return dict(r=r, a=a, r2r=r2r, r2a=r2a, a2r=a2r, a2a=a2a, mu_r=mu_r, mu_a=mu_a,
                    log_variance_r=log_variance_r, log_variance_a=log_variance_a)

    def decode_control(self, h: jax.Array, *, train: bool) -> jax.Array:
        return self.control_decoder(h, train=train)

    def decode_perturbed(self, h: jax.Array, *, train: bool) -> jax.Array:
        return self.perturbed_decoder(h, train=train)

    def discriminate(self, control_latent: jax.Array, perturbed_latent: jax.Array, *,
                     train: bool) -> tuple[jax.Array, jax.Array]:
        """Probabilities that latents are real, per modality's discriminator."""
        return (self.control_discriminator(control_latent, train=train)[..., 0],
                self.perturbed_discriminator(perturbed_latent, train=train)[..., 0])

    def predict(self, x: jax.Array, *, train: bool) -> jax.Array:
        _, to_perturbed, _, _ = self.translator(self.control_encoder(x, train=train),
                                                "control", train=train)
        return self.perturbed_decoder(to_perturbed, train=train)

    def __call__(self, control: jax.Array, perturbed: jax.Array, *, train: bool) -> jax.Array:
        """Creates every parameter (initialisation only)."""
        self.pretrain(control, "control", train=train)
        self.pretrain(perturbed, "perturbed", train=train)
        out = self.translate_latents(control, perturbed, train=train)
        self.discriminate(out["r"], out["a"], train=train)
        return self.decode_perturbed(out["r2a"], train=train) + self.decode_control(
            out["a2r"], train=train)


def kl_mean(mu: jax.Array, log_variance: jax.Array) -> jax.Array:
    """scButterfly's KL (kl_mean=True): the mean over cells and dimensions."""
    return jnp.mean(gaussian_kl(mu, log_variance, axis=None))


def _mse(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((x - y) ** 2)


def soft_labels(key: jax.Array, n: int) -> jax.Array:
    """The published discriminator targets: u ~ U(0, 1), with u in (0.5, 0.8] set to 0.8 and
    u in (0.2, 0.5] to 0.2; a row is a real latent where its label exceeds 0.5."""
    u = jax.random.uniform(key, (n,))
    return jnp.where((u > 0.5) & (u <= 0.8), 0.8, jnp.where((u > 0.2) & (u <= 0.5), 0.2, u))


def _bce(probability: jax.Array, label: jax.Array) -> jax.Array:
    """PyTorch's `nn.BCELoss()` on probabilities (log clamped at -100, as there)."""
    log_p = jnp.maximum(jnp.log(probability), -100.0)
    log_not_p = jnp.maximum(jnp.log1p(-probability), -100.0)
    return -jnp.mean(label * log_p + (1.0 - label) * log_not_p)


@dataclasses.dataclass(frozen=True)
class ScButterflyObjective(Objective):
    """The three published phases inside the scanned epoch (the phase is chosen by the
    epoch, which all members share, so only one phase's branch runs). Batches are OT pairs:
    `source_row` a control cell, `target_row` its stimulated partner, in the shared `cells`."""

    weighs_validation_rows: ClassVar[bool] = True

    n_genes: int = 1
    rng_streams: ClassVar[tuple[str, ...]] = ("dropout", "latent")

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return source_and_target(batch)

    def _optimizer(self, name: str, tx: optax.GradientTransformation
                   ) -> optax.GradientTransformation:
        """The loop's Adam for a network module, SGD for a discriminator (as published)."""
        if name in DISCRIMINATORS:
            return optax.sgd(self.module.config.discriminator_learning_rate)
        return tx

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        """One optimiser state per module (the published code has one optimiser per
        module)."""
        return {name: self._optimizer(name, tx).init(value) for name, value in params.items()}

    def _kl_weight(self, epoch: jax.Array, phase_start: int, modalities: int) -> jax.Array:
        c = self.module.config
        warmup = (jnp.minimum((epoch - phase_start) / c.kl_warmup_epochs, 1.0)
                  if c.kl_warmup_epochs else 1.0)
        return modalities * c.kl_scale / self.n_genes * warmup

    def _pretrain_step(self, modality: str, phase_start: int):
        names = CONTROL_AE if modality == "control" else PERTURBED_AE

        def run(params, model_state, opt_state, batch, key, tx, epoch):
            x = self.inputs(batch)[0 if modality == "control" else 1]

            def objective(group: PyTree):
                (reconstruction, mu, log_variance), state = self.apply_train(
                    {**params, **group}, model_state, key, x, modality, method="pretrain")
                loss = (_mse(reconstruction, x)
                        + self._kl_weight(epoch, phase_start, 1) * kl_mean(mu, log_variance))
                return loss, state

            group = {name: params[name] for name in names}
            (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(group)
            params, opt_state = self._update(tx, grads, params, opt_state)
            return params, model_state, opt_state, loss

        return run

    def _update(self, tx, grads: PyTree, params: PyTree, opt_state: PyTree
                ) -> tuple[PyTree, PyTree]:
        """Step the modules named in `grads`, each with its own optimiser state."""
        params, opt_state = dict(params), dict(opt_state)
        for name, grad in grads.items():
            params[name], opt_state[name] = alternating.update(
                self._optimizer(name, tx), grad, opt_state[name], params[name])
        return params, opt_state

    def _discriminator_loss(self, params: PyTree, model_state: PyTree, control: jax.Array,
                            perturbed: jax.Array, key: jax.Array) -> tuple[jax.Array, PyTree]:
        """BCE of both discriminators on soft labels: a row shows the real latent of a
        modality where its label exceeds 0.5, else the other modality's translation."""
        out, state = self.apply_train(params, model_state, key, control, perturbed,
                                      method="translate_latents")
        labels = soft_labels(jax.random.fold_in(key, 7), len(control))
        real = (labels > 0.5)[:, None]
        (p_control, p_perturbed), state = self.apply_train(
            params, state, key, jnp.where(real, out["r"], out["a2r"]),
            jnp.where(real, out["a"], out["r2a"]), method="discriminate")
        return _bce(p_perturbed, labels) + _bce(p_control, labels), state

    def _joint_step(self, params, model_state, opt_state, batch, key, tx, epoch):
        c = self.module.config
        control, perturbed = self.inputs(batch)
        critic_key, network_key = jax.random.split(key)

        def critic_objective(critics: PyTree):
            return self._discriminator_loss({**params, **critics}, model_state, control,
                                            perturbed, critic_key)

        critics = {name: params[name] for name in DISCRIMINATORS}
        grads, model_state = jax.grad(critic_objective, has_aux=True)(critics)
        params, opt_state = self._update(tx, grads, params, opt_state)

        def network_objective(group: PyTree):
            everything = {**params, **group}
            adversarial, state = self._discriminator_loss(everything, model_state, control,
                                                          perturbed, network_key)
            out, state = self.apply_train(everything, state, network_key, control, perturbed,
                                          method="translate_latents")
            reconstruction = 0.0
            for method, latent, target in (("decode_control", "r2r", control),
                                           ("decode_control", "a2r", control),
                                           ("decode_perturbed", "r2a", perturbed),
                                           ("decode_perturbed", "a2a", perturbed)):
                decoded, state = self.apply_train(everything, state, network_key, out[latent],
                                                  method=method)
                reconstruction = reconstruction + _mse(decoded, target)
            kl = (kl_mean(out["mu_r"], out["log_variance_r"])
                  + kl_mean(out["mu_a"], out["log_variance_a"]))
            fool = jnp.where(jax.lax.stop_gradient(adversarial) < c.adversarial_threshold,
                             c.adversarial_weight * adversarial, 0.0)
            loss = (self._kl_weight(epoch, 2 * c.pretrain_epochs, 2) * kl + reconstruction
                    - fool)
            return loss, state

        group = {name: params[name] for name in JOINT}
        (loss, model_state), grads = jax.value_and_grad(network_objective, has_aux=True)(group)
        params, opt_state = self._update(tx, grads, params, opt_state)
        return params, model_state, opt_state, loss

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: optax.GradientTransformation, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        pretrain = self.module.config.pretrain_epochs
        phases = [self._pretrain_step("control", 0), self._pretrain_step("perturbed", pretrain),
                  self._joint_step]
        phase = jnp.minimum(epoch // pretrain, 2) if pretrain else jnp.int32(2)
        return jax.lax.switch(phase, [lambda *a, f=f: f(*a, tx, epoch) for f in phases],
                              params, model_state, opt_state, batch, key)

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Mean squared error of the translated validation pairs (eval mode)."""
        control, perturbed = self.inputs(batch)
        prediction = self.apply_eval(params, model_state, control, method="predict")
        return row_mean((prediction - perturbed) ** 2, batch)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, batch["x"], method="predict")


PUBLISHED = (
    ScButterflyConfig(),
    # 100 + 100 pre-training epochs, 200 joint epochs, Adam 1e-3 (PyTorch defaults), batch
    # 64. Each published phase also stops early (patience 50) and restores its best weights;
    # here every epoch runs and the last weights are kept (docs/ports.md).
    TrainConfig(epochs=400, batch_size=64, learning_rates=(1e-3,), patience=None,
                select_best=False),
)
CONFIGS = {"published": PUBLISHED}


def build(config: ScButterflyConfig, task: Task) -> ScButterflyObjective:
    """The trainable objective (trained on OT pairs; contexts are not read)."""
    return ScButterflyObjective(ScButterfly(config, task.n_genes), n_genes=task.n_genes)
