"""What a study or a user sets on every model it fits, whatever the model."""

from __future__ import annotations

import dataclasses

from perturbjax.ot import PairingConfig


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The configuration name, an epoch count that overrides the configuration's (its phases
    keep their proportions), checkpoints, the condition vector ("one_hot" or "log_dose"),
    whether condition labels are doses, and how optimal-transport pairs are made."""

    configuration: str = "default"
    epochs: int | None = None
    checkpoint_every: int = 0
    conditioning: str = "one_hot"
    doses: bool = False
    pairing: PairingConfig = PairingConfig()
