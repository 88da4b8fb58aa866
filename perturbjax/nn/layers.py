"""Layers shared by every model: FiLM conditioning, a dense block, MLP encoders/decoders and a
discriminator.

Every layer takes a `Convention` (`perturbjax.nn.conventions`): the initialisation and BatchNorm
constants of the code its model is ported from. The default is the multi-task models' source
code: Xavier-uniform weights, PyTorch's BatchNorm defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from perturbjax.nn.conventions import PYTORCH_XAVIER, Convention

FILM_MODES = ("original", "affine")


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with PyTorch's default slope 0.01, the activation of the original models."""
    return nn.leaky_relu(x, negative_slope=0.01)


class FiLM(nn.Module):
    """Feature-wise linear modulation gamma(c) * h + beta(c) by a condition vector c.

    mode "original": gamma, beta = LeakyReLU(Dense(c)) (the original code; gamma starts near 0).
    mode "affine": gamma = 1 + Dense(c), beta = Dense(c) (starts as the identity).
    `embedding` > 0 first maps c through Dense(embedding) + LeakyReLU (seed multi-dose models).
    """

    mode: str = "affine"
    embedding: int = 0
    convention: Convention = PYTORCH_XAVIER

    @nn.compact
    def __call__(self, h: jax.Array, c: jax.Array) -> jax.Array:
        if self.mode not in FILM_MODES:
            raise ValueError(f"FiLM mode must be one of {FILM_MODES}, got '{self.mode}'")
        dense = self.convention.dense
        if self.embedding:
            c = leaky_relu(dense(self.embedding, c.shape[-1], name="embed")(c))
        gamma = dense(h.shape[-1], c.shape[-1], name="gamma")(c)
        beta = dense(h.shape[-1], c.shape[-1], name="beta")(c)
        if self.mode == "original":
            gamma, beta = leaky_relu(gamma), leaky_relu(beta)
        else:
            gamma = 1.0 + gamma
        return gamma * h + beta


class DenseBlock(nn.Module):
    """Dense -> [BatchNorm | LayerNorm] -> [FiLM(c)] -> activation -> [Dropout].

    Before BatchNorm the Dense layer has no bias: BatchNorm subtracts it again, so its exact
    gradient is zero and Adam would only amplify rounding noise in it. The activation is
    LeakyReLU unless another is given (scPreGAN's blocks use LayerNorm and ReLU).
    """

    features: int
    batch_norm: bool = True
    dropout: float = 0.0
    film: FiLM | None = None
    layer_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = leaky_relu
    convention: Convention = PYTORCH_XAVIER

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array | None = None, *, train: bool) -> jax.Array:
        h = self.convention.dense(self.features, x.shape[-1], use_bias=not self.batch_norm)(x)
        if self.batch_norm:
            h = self.convention.batch_norm(train=train)(h)
        if self.layer_norm:
            h = nn.LayerNorm(epsilon=1e-5)(h)
        if self.film is not None:
            h = self.film(h, c)
        h = self.activation(h)
        if self.dropout:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return h


class Encoder(nn.Module):
    """[input dropout] -> DenseBlocks(hidden) -> Dense(latent) [-> LeakyReLU].

    `variational`: a second head, Dense(latent) named `log_variance`, makes the output the
    pair (mean, log-variance) of a Gaussian latent (the activation, if any, on both heads).
    """

    hidden: Sequence[int]
    latent: int
    batch_norm: bool = True
    dropout: float = 0.0
    input_dropout: float = 0.0
    latent_activation: bool = False
    variational: bool = False
    convention: Convention = PYTORCH_XAVIER

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array | tuple[jax.Array, jax.Array]:
        if self.input_dropout:
            x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        for width in self.hidden:
            x = DenseBlock(width, self.batch_norm, self.dropout,
                           convention=self.convention)(x, train=train)
        activation = leaky_relu if self.latent_activation else (lambda v: v)
        z = activation(self.convention.dense(self.latent, x.shape[-1])(x))
        if not self.variational:
            return z
        log_variance = self.convention.dense(self.latent, x.shape[-1], name="log_variance")(x)
        return z, activation(log_variance)


class Decoder(nn.Module):
    """DenseBlocks(hidden), each FiLM-modulated by c when `film_mode` is set, -> Dense(out).

    One FiLM generator per modulated layer, placed after BatchNorm and before the activation.
    """

    hidden: Sequence[int]
    out: int
    batch_norm: bool = True
    dropout: float = 0.0
    film_mode: str | None = "affine"
    film_embedding: int = 0
    output_activation: bool = False
    convention: Convention = PYTORCH_XAVIER

    @nn.compact
    def __call__(self, z: jax.Array, c: jax.Array | None = None, *, train: bool) -> jax.Array:
        for width in self.hidden:
            film = (FiLM(self.film_mode, self.film_embedding, self.convention)
                    if self.film_mode is not None else None)
            z = DenseBlock(width, self.batch_norm, self.dropout, film,
                           convention=self.convention)(z, c, train=train)
        x = self.convention.dense(self.out, z.shape[-1])(z)
        return leaky_relu(x) if self.output_activation else x


class Discriminator(nn.Module):
    """Spectral-norm Dense(hidden) -> activation -> Dropout, then Dense(1): one logit (or
    critic value) per row.

    Spectral normalisation bounds the critic's Lipschitz constant, which keeps the adversarial
    game stable; its power-iteration vector lives in the `batch_stats` collection.
    """

    hidden: Sequence[int] = (32,)
    dropout: float = 0.1
    convention: Convention = PYTORCH_XAVIER
    activation: Callable[[jax.Array], jax.Array] = leaky_relu

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        dense = self.convention.dense
        for width in self.hidden:
            x = nn.SpectralNorm(dense(width, x.shape[-1]))(x, update_stats=train)
            x = self.activation(x)
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(1, x.shape[-1])(x)[..., 0]


def gaussian_kl(mean: jax.Array, log_variance: jax.Array, variance: jax.Array | None = None,
                axis: int | None = -1) -> jax.Array:
    """KL(N(mean, variance) || N(0, 1)) summed over `axis`, the latent dimensions (None: each
    dimension's term, for a model that averages them); `variance` defaults to
    exp(log_variance)."""
    if variance is None:
        variance = jnp.exp(log_variance)
    terms = variance + mean**2 - 1.0 - log_variance
    return 0.5 * (terms if axis is None else jnp.sum(terms, axis=axis))


def one_hot(codes: jax.Array, n: int) -> jax.Array:
    """Integer condition codes -> float32 one-hot rows of length n."""
    return jax.nn.one_hot(codes, n, dtype=jnp.float32)
