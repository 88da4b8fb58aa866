"""The training core shared by every model: objective protocol, scanned loop, checkpoints."""

from perturbjax.train.checkpoint import Checkpointer, CheckpointMismatchError
from perturbjax.train.config import TrainConfig, make_optimizer
from perturbjax.train.loop import Trainer, fit
from perturbjax.train.members import FitResult, Folds, apply_members, predict_members
from perturbjax.train.objective import Batch, Objective
from perturbjax.train.state import TrainState

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
    "apply_members",
    "fit",
    "make_optimizer",
    "predict_members",
]
