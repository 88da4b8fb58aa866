"""What the loop carries from epoch to epoch, for every member at once."""

from __future__ import annotations

import flax.struct
import jax

from perturbjax.train.objective import PyTree


@flax.struct.dataclass
class TrainState:
    """Everything one member needs to continue training; every leaf has the members axis."""

    params: PyTree
    model_state: PyTree
    opt_state: PyTree
    best_params: PyTree
    best_model_state: PyTree
    key: jax.Array
    learning_rate: jax.Array
    best_val: jax.Array
    best_epoch: jax.Array
    train_loss: jax.Array  # (epochs,) history, NaN where not yet run
    val_loss: jax.Array
