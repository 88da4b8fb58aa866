"""The numerical conventions of the code a model is ported from: how its linear layers start
and which constants its BatchNorm uses.

A port that keeps the published layer sizes but not these is not the published model: for a
square layer, Xavier-uniform weights are sqrt(3) times wider than PyTorch's default, and a
BatchNorm whose running average moves ten times faster predicts from other statistics.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

INITIALISATIONS = ("xavier", "torch")


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default bias of `nn.Linear`: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / jnp.sqrt(float(fan_in))

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32
             ) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# PyTorch's default weight of `nn.Linear`, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)),
# which is variance scaling 1/3 over fan_in (bound sqrt(3 x scale / fan_in)).
TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
XAVIER_KERNEL_INIT = nn.initializers.xavier_uniform()


@dataclasses.dataclass(frozen=True)
class Convention:
    """Initialisation and BatchNorm constants shared by every layer of one model.

    init: "xavier" (Xavier-uniform weights, zero biases) or "torch" (PyTorch's `nn.Linear`
    default: weights and biases U(+-1/sqrt(fan_in))).
    batch_norm_momentum: Flax's convention, the weight of the old running average; PyTorch's
    momentum m is 1 - m here (torch 0.1 -> 0.9, torch 0.01 -> 0.99).
    """

    init: str = "xavier"
    batch_norm_momentum: float = 0.9
    batch_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        if self.init not in INITIALISATIONS:
            raise ValueError(f"Convention.init must be one of {INITIALISATIONS}, "
                             f"got '{self.init}'")
        if not 0.0 <= self.batch_norm_momentum < 1.0 or self.batch_norm_epsilon <= 0.0:
            raise ValueError("Convention: batch_norm_momentum must lie in [0, 1) and "
                             "batch_norm_epsilon be positive")

    def dense(self, features: int, fan_in: int, *, use_bias: bool = True,
              name: str | None = None) -> nn.Dense:
        """A Dense layer of `features` outputs over `fan_in` inputs, initialised this way."""
        if self.init == "torch":
            return nn.Dense(features, use_bias=use_bias, kernel_init=TORCH_KERNEL_INIT,
                            bias_init=torch_bias_init(fan_in), name=name)
        return nn.Dense(features, use_bias=use_bias, kernel_init=XAVIER_KERNEL_INIT, name=name)

    def batch_norm(self, *, train: bool) -> nn.BatchNorm:
        return nn.BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                            epsilon=self.batch_norm_epsilon)


# PyTorch code that Xavier-initialises its weights (the multi-task models' source code,
# scButterfly's `nn.init.xavier_uniform_`), with PyTorch's BatchNorm defaults.
PYTORCH_XAVIER = Convention()
# Models written in plain PyTorch: its default initialisation and BatchNorm (torch momentum
# 0.1, eps 1e-5).
PYTORCH = Convention("torch")
# Models built on scvi-tools' `FCLayers` (scGen, scVIDR): PyTorch's initialisation and
# `nn.BatchNorm1d(n_out, momentum=0.01, eps=0.001)` (scvi/nn/_base_components.py).
SCVI_TOOLS = Convention("torch", batch_norm_momentum=0.99, batch_norm_epsilon=1e-3)
