"""Orbax checkpoints of the whole training state, for resuming a killed run exactly.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a kill
mid-write never leaves a checkpoint that looks finished. A JSON fingerprint of the run
(configuration, seeds, data shapes) is stored beside the state; resuming with a different
fingerprint is refused rather than silently mixing two runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from perturbjax.errors import PerturbjaxError


class CheckpointMismatchError(PerturbjaxError):
    """A checkpoint directory belongs to a run with a different configuration."""


class Checkpointer:
    """Saves and restores (epoch, state) pairs under `directory`, keeping the newest few."""

    def __init__(self, directory: str | os.PathLike, fingerprint: dict[str, Any],
                 max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False
            ),
            item_names=("state", "fingerprint"),
        )

    def latest_epoch(self) -> int | None:
        """Number of epochs completed by the newest checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, epoch: int, state: Any) -> None:
        self._manager.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                fingerprint=ocp.args.JsonSave(self.fingerprint),
            ),
        )
        self._manager.wait_until_finished()

    def restore(self, epoch: int, template: Any) -> Any:
        """The state saved after `epoch` epochs, with the structure and sharding of `template`.

        The saved fingerprint is read and compared first, so a checkpoint of another run (other
        shapes included) is refused by name, never by a failed restore."""
        saved = self._manager.restore(
            epoch, args=ocp.args.Composite(fingerprint=ocp.args.JsonRestore())).fingerprint
        if saved != self.fingerprint:
            raise CheckpointMismatchError(
                f"{self.directory}: checkpoint of epoch {epoch} was written by a different run "
                f"(saved {saved}, now {self.fingerprint}); use a fresh workdir"
            )
        restored = self._manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))
        return restored.state

    def close(self) -> None:
        self._manager.close()
