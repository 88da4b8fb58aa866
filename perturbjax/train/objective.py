"""What a model gives the training loop: a Flax module, its initialisation and its loss.

The loop never looks inside a model. It calls `init` once per ensemble member, `loss` once per
mini-batch (train mode: dropout on, BatchNorm statistics updated) and `validation_loss` once
per epoch (eval mode). Subclasses define `loss` and `predict`; models with alternating
updates (a discriminator beside the network) override `train_step` and `init_optimizer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import optax

Batch = dict[str, jax.Array]
PyTree = Any
# The weight of each validation row, present when folds of different sizes are padded: 0 on
# the padding. Every validation loss is a (weighted) mean over rows (`row_mean`).
ROW_WEIGHT = "row_weight"


def row_mean(values: jax.Array, batch: Batch) -> jax.Array:
    """The mean of `values` (rows on axis 0, any further axes averaged within a row); with
    the batch's `row_weight`, a weighted mean over rows, so padded rows count for nothing."""
    if ROW_WEIGHT not in batch:
        return values.mean()
    weight = batch[ROW_WEIGHT]
    per_row = values.reshape(values.shape[0], -1).mean(axis=1)
    return (per_row * weight).sum() / weight.sum()


@dataclasses.dataclass(frozen=True)
class Objective:
    """A Flax module plus the loss it is trained on.

    `selection`, when a training protocol supplies one, replaces `validation_loss` as the
    score the loop selects epochs and rates on: `selection(objective, params, model_state,
    batch)` (e.g. `inner_selection` scores predictions of held-out training contexts). A model
    never needs to know which protocol selects it.
    """

    module: nn.Module
    selection: Callable[..., jax.Array] | None = dataclasses.field(default=None, kw_only=True)
    # Random streams the module draws from in training; each gets its own key per step.
    rng_streams: ClassVar[tuple[str, ...]] = ("dropout",)
    # Whether `validation_loss` takes its mean with `row_mean` (needed for padded folds).
    weighs_validation_rows: ClassVar[bool] = False

    def init(self, key: jax.Array, batch: Batch) -> tuple[PyTree, PyTree]:
        """(params, model_state) for one member; model_state holds e.g. BatchNorm statistics."""
        params_key, dropout_key = jax.random.split(key)
        variables = self.module.init(
            {"params": params_key, "dropout": dropout_key}, *self.inputs(batch), train=False
        )
        params = variables.pop("params")
        return params, dict(variables)

    def apply_train(self, params: PyTree, model_state: PyTree, key: jax.Array, *args: Any,
                    method: Any = None) -> tuple[Any, PyTree]:
        """Forward pass in train mode; returns (outputs, updated model_state)."""
        rngs = {name: key if i == 0 else jax.random.fold_in(key, i)
                for i, name in enumerate(self.rng_streams)}
        out, updates = self.module.apply(
            {"params": params, **model_state}, *args, train=True, rngs=rngs,
            mutable=list(model_state), method=method,
        )
        return out, {**model_state, **updates}

    def apply_eval(self, params: PyTree, model_state: PyTree, *args: Any,
                   method: Any = None) -> Any:
        """Forward pass in eval mode (no dropout, running BatchNorm statistics)."""
        return self.module.apply({"params": params, **model_state}, *args, train=False,
                                 method=method)

    def inputs(self, batch: Batch) -> tuple[jax.Array, ...]:
        """The positional inputs of the module's `__call__` for a batch."""
        raise NotImplementedError

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             key: jax.Array) -> tuple[jax.Array, PyTree]:
        """Scalar training loss of a batch and the updated model_state."""
        raise NotImplementedError

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """Scalar loss in eval mode, used for best-epoch selection and early stopping: a mean
        over the batch's rows, taken with `row_mean` so that padded rows weigh nothing."""
        raise NotImplementedError

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """The model's prediction for a batch, in eval mode."""
        raise NotImplementedError

    def embedding(self, x: Any) -> Any:
        """Cells' coordinates in a space every member shares (e.g. a fixed projection), or
        None: a learned latent differs from member to member."""
        return None

    def selection_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        """What the loop selects on: the supplied `selection`, else `validation_loss`."""
        if self.selection is not None:
            return self.selection(self, params, model_state, batch)
        return self.validation_loss(params, model_state, batch)

    def init_optimizer(self, tx: optax.GradientTransformation, params: PyTree) -> PyTree:
        """The optimiser state of one member (one per parameter group, where groups alternate)."""
        return tx.init(params)

    def train_step(self, params: PyTree, model_state: PyTree, opt_state: PyTree, batch: Batch,
                   key: jax.Array, tx: Any, epoch: jax.Array
                   ) -> tuple[PyTree, PyTree, PyTree, jax.Array]:
        """One optimiser update on a batch. `epoch` (a traced integer) lets models with a
        schedule of training phases choose what to update; this default ignores it."""
        (loss, model_state), grads = jax.value_and_grad(self.loss, has_aux=True)(
            params, model_state, batch, key
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), model_state, opt_state, loss
