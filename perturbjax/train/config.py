"""How a model is trained: the optimiser, schedule, batches, model selection and checkpoints."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

SELECTION_SCORES = ("response", "response_and_effect")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, batches, model selection and checkpoints.

    Attributes:
      epochs: maximum number of passes over the training cells.
      batch_size: cells per step; the last partial batch of an epoch is dropped.
      learning_rates: Adam learning rates; several are trained side by side (vmapped) and
        the one with the lowest validation loss is kept per seed.
      warmup_steps: linear warm-up of the learning rate from 0 over this many steps.
      adam_eps, adam_betas, weight_decay: Adam's epsilon and moment decays, and an L2
        penalty added to the gradient (PyTorch's `Adam(weight_decay=...)`).
      decay_every, decay_factor: a staircase schedule: the learning rate is multiplied by
        `decay_factor` every `decay_every` steps (0: constant; scPreGAN's StepLR).
      patience: stop once no member improved its validation loss for this many epochs;
        None trains every epoch.
      select_best: keep the parameters of the best validation epoch (else the last).
      validation_fraction: share of each (context, condition) group held out for validation.
      inner_contexts: select instead on how well the model predicts this many training
        contexts whose perturbed cells it did not see, each a fold of the same program
        (`perturbjax.models.inner_selection`; no validation split then); 0: on the
        validation split's loss.
      selection_score: what inner contexts are scored on: "response" (1 - Pearson of the
        mean response on the real top DEGs) or "response_and_effect" (its mean with 1 - the
        concordance of the standardised effects on those genes, which reads the spread).
      checkpoint_every: save an orbax checkpoint every this many epochs (0: never).
      shared_batch_order: every member visits the cells in the same shuffled order (seeds
        still differ in initialisation and dropout). The mini-batch is then the same for all
        members, so vmap turns each layer into one wide matmul instead of one per member.
      learning_rate_multipliers: (parameter name, factor) pairs: parameters of that name
        (e.g. a concrete selector's 'logits', which must travel far) take steps that many
        times larger.
    """

    epochs: int = 200
    batch_size: int = 64
    learning_rates: tuple[float, ...] = (1e-3,)
    warmup_steps: int = 0
    adam_eps: float = 1e-8
    adam_betas: tuple[float, float] = (0.9, 0.999)
    decay_every: int = 0
    decay_factor: float = 1.0
    weight_decay: float = 0.0
    patience: int | None = 20
    select_best: bool = True
    validation_fraction: float = 0.1
    inner_contexts: int = 0
    selection_score: str = "response"
    checkpoint_every: int = 0
    shared_batch_order: bool = False
    learning_rate_multipliers: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1:
            problems.append(f"epochs ({self.epochs}) and batch_size ({self.batch_size}) "
                            "must be at least 1")
        if not self.learning_rates or min(self.learning_rates) <= 0:
            problems.append(f"learning_rates {self.learning_rates} must be non-empty and > 0")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience ({self.patience}) must be None or at least 1")
        if not 0.0 < self.validation_fraction < 1.0:
            problems.append(f"validation_fraction ({self.validation_fraction}) must lie in (0, 1)")
        if any(factor <= 0 for _, factor in self.learning_rate_multipliers):
            problems.append(f"learning_rate_multipliers {self.learning_rate_multipliers} "
                            "must be positive")
        if min(self.warmup_steps, self.checkpoint_every, self.decay_every,
               self.inner_contexts) < 0:
            problems.append("warmup_steps, checkpoint_every, decay_every and inner_contexts "
                            "must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas) or not 0 < self.decay_factor <= 1:
            problems.append(f"adam_betas {self.adam_betas} must lie in [0, 1) and "
                            f"decay_factor ({self.decay_factor}) in (0, 1]")
        if self.selection_score not in SELECTION_SCORES:
            problems.append(f"selection_score '{self.selection_score}' must be one of "
                            f"{SELECTION_SCORES}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


def make_optimizer(learning_rate: jax.Array | float,
                   config: TrainConfig) -> optax.GradientTransformation:
    """Adam with an optional L2 penalty, linear warm-up and staircase decay; `learning_rate`
    may be traced."""
    warmup, every = config.warmup_steps, config.decay_every

    def schedule(step: jax.Array) -> jax.Array:
        ramp = jnp.minimum(step / warmup, 1.0) if warmup else 1.0
        decay = config.decay_factor ** (step // every) if every else 1.0
        return learning_rate * ramp * decay

    parts = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay else []
    b1, b2 = config.adam_betas
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=config.adam_eps))
    if config.learning_rate_multipliers:
        parts.append(_scale_by_name(dict(config.learning_rate_multipliers)))
    return optax.chain(*parts, optax.scale_by_learning_rate(schedule))


def _scale_by_name(factors: dict[str, float]) -> optax.GradientTransformation:
    """Multiply the updates of parameters whose (last) name is a key of `factors`."""
    def scale(path, update):
        name = getattr(path[-1], "key", None) if path else None
        return update * factors.get(name, 1.0)

    def update(updates, state, params=None):
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
