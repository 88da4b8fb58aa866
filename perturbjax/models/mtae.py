"""The multi-task family: an autoencoder whose decoder is FiLM-modulated by the condition
(the original code, 003), with its adversarial and variational variants as configurations
of one model.

The encoder is shared by all conditions; every hidden layer of the decoder carries its own
FiLM generator fed the condition vector (a one-hot, or log1p(dose) for a continuous dose).
Training reconstructs each cell with its own condition (a conditional autoencoder, as the original
code does) or, on optimal-transport pairs, maps a control cell to its partner under the
partner's condition (`perturbjax.models.fitting.fit_on_pairs`). Prediction decodes the latent
of a control cell under the perturbation: decode(encode(x_ctrl), c(p)).

- MTAe: the plain autoencoder.
- MTAeAdv: a latent discriminator tells control cells (soft label ~U(0.9, 1)) from perturbed
  ones (~U(0, 0.1)); the encoder is trained to make perturbed latents look like control, so
  the latent carries the cell state and the decoder's FiLM carries the perturbation.
- MTAeAdvG: the discriminator tells N(0, I) samples from latents (all cells).
- MTVae: Gaussian latent heads with a KL term; prediction decodes the mean.
The optimal-transport variants are these models trained on pairs (see `VARIANTS`);
MTAe-OT-response predicts the decoded response added to each real control cell
(`MTAeConfig.decode_response`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from perturbjax.models.fitting import Task, source_and_target
from perturbjax.models.settings import FitSettings
from perturbjax.nn.layers import Decoder, Discriminator, Encoder, gaussian_kl
from perturbjax.train import TrainConfig, alternating
from perturbjax.train.objective import Batch, Objective, PyTree, row_mean

CONDITIONINGS = ("one_hot", "log_dose")
DISCRIMINATORS = ("none", "condition", "gaussian")
DISCRIMINATOR = "discriminator"  # the parameter group the adversarial step trains apart


@dataclasses.dataclass(frozen=True)
class MTAeConfig:
    """Architecture and losses of the FiLM autoencoder (the decoder mirrors `hidden`).

    Attributes:
      conditioning: "one_hot" over the sorted conditions, or "log_dose": the single number
        log1p(dose) (condition labels must be doses), which lets the model interpolate to a
        dose it never saw.
      variational: Gaussian latent (mean and log-variance heads), KL-regularised; the
        prediction decodes the mean.
      kl_weight: weight of the KL term (per cell, summed over latent dimensions); with
        `kl_batch` > 0 it becomes kl_weight x kl_batch / n_train (the original code's MTVae).
      discriminator: "none", "condition" (control vs perturbed latents) or "gaussian"
        (N(0, I) samples vs latents); see the module docstring.
      adversarial_weight: lambda: the network's loss is (1 - lambda) x reconstruction +
        lambda x the BCE of fooling the discriminator.
      discriminator_hidden, discriminator_dropout: the discriminator's layers.
      pretrain_epochs, discriminator_epochs: the original schedule: this many epochs of the
        autoencoder alone, then of the discriminator alone, then both per batch.
      decode_response: predict x_ctrl + decode(z, c) - decode(z, c_control): the decoded
        response added to each real control cell, which keeps the cell's own noise,
        instead of the decoded (denoised) profile decode(z, c).
    """

    hidden: tuple[int, ...] = (256,)
    latent: int = 128
    batch_norm: bool = True
    dropout: float = 0.5
    input_dropout: float = 0.2
    latent_activation: bool = False
    output_activation: bool = False
    film_mode: str = "affine"
    film_embedding: int = 0
    conditioning: str = "one_hot"
    variational: bool = False
    kl_weight: float = 0.0
    kl_batch: int = 0
    discriminator: str = "none"
    adversarial_weight: float = 0.01
    discriminator_hidden: tuple[int, ...] = (32,)
    discriminator_dropout: float = 0.1
    pretrain_epochs: int = 0
    discriminator_epochs: int = 0
    decode_response: bool = False

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"MTAeConfig.conditioning must be one of {CONDITIONINGS}, got "
                             f"'{self.conditioning}'")
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(f"MTAeConfig.discriminator must be one of {DISCRIMINATORS}, got "
                             f"'{self.discriminator}'")
        if not 0.0 <= self.adversarial_weight < 1.0 or self.kl_weight < 0:
            raise ValueError("adversarial_weight must lie in [0, 1) and kl_weight be >= 0")


class Outputs(NamedTuple):
    """A forward pass: reconstruction, the latent fed to the decoder, the KL term per cell
    (zeros without a Gaussian latent) and the discriminator's logit per cell (or None)."""

    reconstruction: jax.Array
    latent: jax.Array
    kl: jax.Array
    logits: jax.Array | None


class MTAe(nn.Module):
    """encode(x) -> z; decode(z, c) -> x_hat with FiLM(c) in every decoder hidden layer."""

    config: MTAeConfig
    n_genes: int

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder(c.hidden, c.latent, c.batch_norm, c.dropout, c.input_dropout,
                               c.latent_activation, c.variational)
        self.decoder = Decoder(tuple(reversed(c.hidden)), self.n_genes, c.batch_norm, c.dropout,
                               c.film_mode, c.film_embedding, c.output_activation)
        if c.discriminator != "none":
            self.discriminator = Discriminator(c.discriminator_hidden, c.discriminator_dropout)

    def encode(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(latent, KL per cell): a sample of the Gaussian in training, its mean otherwise."""
        if not self.config.variational:
            z = self.encoder(x, train=train)
            return z, jnp.zeros(z.shape[:-1], z.dtype)
        mean, log_variance = self.encoder(x, train=train)
        kl = gaussian_kl(mean, log_variance)
        if not train:
            return mean, kl
        noise = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
        return mean + jnp.exp(0.5 * log_variance) * noise, kl

    def decode(self, z: jax.Array, condition: jax.Array, *, train: bool) -> jax.Array:
        return self.decoder(z, condition, train=train)

    def discriminate(self, z: jax.Array, *, train: bool) -> jax.Array:
        return self.discriminator(z, train=train)

    def __call__(self, x: jax.Array, condition: jax.Array, *, train: bool) -> Outputs:
        z, kl = self.encode(x, train=train)
        logits = (self.discriminate(z, train=train) if self.config.discriminator != "none"
                  else None)
        return Outputs(self.decode(z, condition, train=train), z, kl, logits)


@dataclasses.dataclass(frozen=True)
class MTAeObjective(Objective):
    """Mean squared error of the decoded cell against its target, plus the weighted KL.

    A batch holds `condition` (integer codes) and either `x` (each cell is its own target) or
    a pair table: `source_row` / `target_row` indexing the shared matrix `cells` (optimal-
    transport pairs, never copied per pair). `condition_vectors[code]` is what FiLM reads.
    """

    weighs_validation_rows: ClassVar[bool] = True

    condition_vectors: tuple[tuple[float, ...], ...] = ((1.0, 0.0), (0.0, 1.0))
    control_code: int = 0
    kl_weight: float = 0.0
    rng_streams: ClassVar[tuple[str, ...]] = ("dropout", "latent")

    def cells(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """(input cells, target cells) of a batch."""
        return source_and_target(batch)

    def condition(self, batch: Batch) -> jax.Array:
        """The condition vectors FiLM reads for a batch."""
        return jnp.asarray(self.condition_vectors, jnp.float32)[batch["condition"]]

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return self.cells(batch)[0], self.condition(batch)

    def network_loss(self, outputs: Outputs, target: jax.Array) -> jax.Array:
        """Reconstruction error plus the weighted KL term."""
        error = jnp.mean((outputs.reconstruction - target) ** 2)
        return error + self.kl_weight * outputs.kl.mean()

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             key: jax.Array) -> tuple[jax.Array, PyTree]:
        x, target = self.cells(batch)
        outputs, model_state = self.apply_train(params, model_state, key, x,
                                                self.condition(batch))
        return self.network_loss(outputs, target), model_state

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Reconstruction error of the validation rows."""
        x, target = self.cells(batch)
        outputs = self.apply_eval(params, model_state, x, self.condition(batch))
        return row_mean((outputs.reconstruction - target) ** 2, batch)

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """decode(encode(x), c); with `decode_response`, x + decode(z, c) - decode(z, control)."""
        x, condition = self.inputs(batch)
        outputs = self.apply_eval(params, model_state, x, condition)
        if not self.module.config.decode_response:
            return outputs.reconstruction
        control = jnp.broadcast_to(self.condition({"condition": jnp.int32(self.control_code)}),
                                   condition.shape)
        baseline = self.apply_eval(params, model_state, outputs.latent, control,
                                   method="decode")
        return x + outputs.reconstruction - baseline


@dataclasses.dataclass(frozen=True)
class AdversarialMTAeObjective(MTAeObjective):
    """MTAe against a latent discriminator: per batch an autoencoder step on
    (1 - lambda) x reconstruction + lambda x fooling loss, then a discriminator step on the
    same batch's latents (detached), each with its own Adam state, inside the scanned epoch.
    The original schedule (autoencoder alone, discriminator alone, then both) is read from the
    epoch."""

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        network, critic = alternating.split(params, [DISCRIMINATOR])
        return {"network": tx.init(network), DISCRIMINATOR: tx.init(critic)}

    def _critic_targets(self, batch: Batch, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(is control, soft label): control ~U(0.9, 1), perturbed ~U(0, 0.1)."""
        is_control = batch["condition"] == self.control_code
        soft = 0.1 * jax.random.uniform(key, is_control.shape)
        return is_control, jnp.where(is_control, 1.0 - soft, soft)

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: optax.GradientTransformation, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        c = self.module.config
        network_key, label_key, critic_key, noise_key = jax.random.split(key, 4)
        adversarial = epoch >= c.pretrain_epochs + c.discriminator_epochs
        train_network = (epoch < c.pretrain_epochs) | adversarial
        train_critic = epoch >= c.pretrain_epochs
        weight = jnp.where(adversarial, c.adversarial_weight, 0.0)
        is_control, critic_target = self._critic_targets(batch, label_key)
        network, critic = alternating.split(params, [DISCRIMINATOR])
        x, target = self.cells(batch)
        condition = self.condition(batch)

        def network_objective(network: PyTree):
            outputs, state = self.apply_train({**network, **critic}, model_state, network_key,
                                              x, condition)
            if c.discriminator == "condition":  # perturbed latents should pass as control
                fool = alternating.binary_cross_entropy(outputs.logits, 1.0 - critic_target,
                                                        weights=~is_control)
            else:  # latents should pass as N(0, I) samples
                fool = alternating.binary_cross_entropy(outputs.logits, 1.0)
            loss = (1.0 - weight) * self.network_loss(outputs, target) + weight * fool
            return loss, (state, outputs.latent)

        (loss, (state, latent)), grads = jax.value_and_grad(network_objective, has_aux=True)(
            network)
        network, network_opt = alternating.update(tx, grads, opt_state["network"], network,
                                                  when=train_network)
        model_state = alternating.keep_if(train_network, state, model_state)

        latent = jax.lax.stop_gradient(latent)
        if c.discriminator == "condition":
            critic_inputs, labels = latent, critic_target
        else:  # real: N(0, I) samples (label 1); fake: latents (label 0), half and half
            noise = jax.random.normal(noise_key, latent.shape, latent.dtype)
            critic_inputs = jnp.concatenate([noise, latent])
            labels = jnp.concatenate([jnp.ones(len(noise)), jnp.zeros(len(latent))])

        def critic_objective(critic: PyTree):
            logits, state = self.apply_train({**network, **critic}, model_state, critic_key,
                                             critic_inputs, method="discriminate")
            return alternating.binary_cross_entropy(logits, labels), state

        (_, state), grads = jax.value_and_grad(critic_objective, has_aux=True)(critic)
        critic, critic_opt = alternating.update(tx, grads, opt_state[DISCRIMINATOR], critic,
                                                when=train_critic)
        model_state = alternating.keep_if(train_critic, state, model_state)
        return ({**network, **critic}, model_state,
                {"network": network_opt, DISCRIMINATOR: critic_opt}, loss)


# The original code as benchmarked. Its separate Adam optimisers for encoder and decoder, with equal
# settings, are one Adam here: Adam acts element-wise, so the updates are identical.
ORIGINAL = (
    MTAeConfig(hidden=(256,), latent=128, batch_norm=True, dropout=0.5, input_dropout=0.2,
               latent_activation=True, output_activation=True, film_mode="original"),
    TrainConfig(epochs=400, batch_size=64, learning_rates=(1e-5,), warmup_steps=100,
                patience=None, select_best=False),
)

# The project's earlier recommendation: identity-initialised linear FiLM, no activation on the
# latent, learning rate and epoch chosen on the validation split's reconstruction.
RECONSTRUCTION = (
    MTAeConfig(hidden=(256,), latent=128, batch_norm=True, dropout=0.2, input_dropout=0.2,
               latent_activation=False, output_activation=False, film_mode="affine"),
    TrainConfig(epochs=100, batch_size=64, learning_rates=(1e-3, 3e-4), warmup_steps=100,
                patience=10, select_best=True),
)
# The recommendation: the same network, learning rate and epoch chosen on the task, how well
# it predicts two training contexts it did not see perturbed (`inner_selection`), since
# reconstruction does not track out-of-distribution quality.
DEFAULT = (RECONSTRUCTION[0], dataclasses.replace(RECONSTRUCTION[1], inner_contexts=2))


def _variant(model: dict, original_model: dict | None = None, original_train: dict | None = None
             ) -> dict[str, tuple[MTAeConfig, TrainConfig]]:
    """`original`, `default` and `reconstruction` configurations of a variant: the base ones
    with changes."""
    return {
        "original": (dataclasses.replace(ORIGINAL[0], **{**model, **(original_model or {})}),
                   dataclasses.replace(ORIGINAL[1], **(original_train or {}))),
        "default": (dataclasses.replace(DEFAULT[0], **model), DEFAULT[1]),
        "reconstruction": (dataclasses.replace(RECONSTRUCTION[0], **model), RECONSTRUCTION[1]),
    }


# Per variant: (named configurations, pairing). Pairing "ot" trains on optimal-transport pairs
# only; "plus_ot" trains as the plain model, then fine-tunes on the pairs.
_MTAE = _variant({})
_ADV = _variant({"discriminator": "condition"},
                original_model={"pretrain_epochs": 400, "discriminator_epochs": 400},
                original_train={"epochs": 900})
_ADVG = _variant({"discriminator": "gaussian"},
                 original_model={"pretrain_epochs": 400, "discriminator_epochs": 400},
                 original_train={"epochs": 900})
_RESPONSE = _variant({"decode_response": True})
_VAE = _variant({"variational": True, "kl_weight": 1e-4},
                original_model={"kl_weight": 0.004, "kl_batch": 32},
                original_train={"learning_rates": (6.6e-6,), "batch_size": 32})
VARIANTS: dict[str, tuple[dict[str, tuple[MTAeConfig, TrainConfig]], str]] = {
    "mtae": (_MTAE, "none"),
    "mtae_adv": (_ADV, "none"),
    "mtae_advg": (_ADVG, "none"),
    "mtvae": (_VAE, "none"),
    "mtae_ot": (_MTAE, "ot"),
    "mtae_ot_response": (_RESPONSE, "ot"),
    "mtae_plus_ot": (_MTAE, "plus_ot"),
    "mtvae_ot": (_VAE, "ot"),
    "mtvae_plus_ot": (_VAE, "plus_ot"),
}
CONFIGS = _MTAE


def condition_vectors(labels: tuple[str, ...], conditioning: str) -> np.ndarray:
    """What FiLM reads per condition code: the one-hot rows, or log1p(dose) of each label."""
    if conditioning == "one_hot":
        return np.eye(len(labels), dtype=np.float32)
    try:
        doses = np.asarray([float(label) for label in labels])
    except ValueError as error:
        raise ValueError(f"conditioning 'log_dose' needs numeric condition labels (doses); "
                         f"got {list(labels)}") from error
    if (doses < 0).any():
        raise ValueError(f"conditioning 'log_dose' needs non-negative doses, got {list(labels)}")
    return np.log1p(doses)[:, None].astype(np.float32)


def adjust(config: MTAeConfig, settings: FitSettings) -> MTAeConfig:
    """The study's condition vector; on doses, the original code's multi-dose models first
    embed the condition (Dense 16 + LeakyReLU)."""
    config = dataclasses.replace(config, conditioning=settings.conditioning)
    if settings.doses and settings.configuration == "original":
        config = dataclasses.replace(config, film_embedding=16)
    return config


def build(config: MTAeConfig, task: Task) -> MTAeObjective:
    """The trainable objective over the task's condition codes; the task's cell count is
    needed only for the original code's KL scaling (`kl_batch`)."""
    kl_weight = config.kl_weight
    if config.kl_batch:
        if not task.n_cells:
            raise ValueError("MTAeConfig.kl_batch scales the KL weight by kl_batch / the "
                             "training cells: the task must give n_cells")
        kl_weight *= config.kl_batch / task.n_cells
    encoding = task.encoding
    vectors = condition_vectors(encoding.labels, config.conditioning)
    objective = (AdversarialMTAeObjective if config.discriminator != "none" else MTAeObjective)
    return objective(MTAe(config, task.n_genes),
                     condition_vectors=tuple(map(tuple, vectors.tolist())),
                     control_code=encoding.code(encoding.control), kl_weight=kl_weight)
