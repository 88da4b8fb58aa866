"""The training core shared by every model: objective protocol, scanned loop, checkpoints."""

from perturbjax.train.checkpoint import Checkpointer, CheckpointMismatchError
from perturbjax.train.loop import (
    FitResult,
    Folds,
    TrainConfig,
    Trainer,
    TrainState,
    fit,
    make_optimizer,
    predict_members,
)
from perturbjax.train.objective import Batch, Objective

__all__ = [
    "Batch",
    "CheckpointMismatchError",
    "Checkpointer",
    "FitResult",
    "Folds",
    "Objective",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "fit",
    "make_optimizer",
    "predict_members",
]
