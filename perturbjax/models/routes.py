"""How one training pass of a learned family reaches the training loop: the one dispatch.

A family's configuration decides three things, and they pick the route:

- what a training row is (`rows`): a cell reconstructing itself ("cells"), a control cell and
  its optimal-transport partner ("pairs"), or one control and one perturbed cell drawn
  independently ("unpaired");
- whether the epoch and learning rate are selected on inner held-out training contexts
  (`inner_selection`) instead of the validation split's reconstruction;
- whether several pools (one per held-out context) train as folds of one program (`pooled`).

The "plus OT" variants run two passes, the second warm-started from the first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from perturbjax.models.fitting import TrainingPool, fit_on_anndata, fit_on_pairs
from perturbjax.models.inner_selection import fit_on_inner_hold_outs
from perturbjax.models.pooled import fit_pools
from perturbjax.ot import PairingConfig
from perturbjax.train import FitResult, TrainConfig
from perturbjax.train.objective import Objective

ROWS = ("cells", "pairs", "unpaired")
# A family's `pairing` -> the rows of its passes, in order (each pass warm-starts the next).
PASSES = {"none": ("cells",), "ot": ("pairs",), "plus_ot": ("cells", "pairs"),
          "unpaired": ("unpaired",)}


@dataclasses.dataclass(frozen=True)
class Route:
    """One training pass: its rows, and how it selects and groups pools (module docstring)."""

    rows: str
    inner: bool = False
    pooled: bool = False

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise ValueError(f"rows must be one of {ROWS}, got '{self.rows}'")


def train_pass(route: Route, objective: Objective, train_config: TrainConfig,
               pools: Sequence[TrainingPool], seeds: Sequence[int], pairing: PairingConfig,
               self_pairs: bool, warm_start: FitResult | None, workdir: Path | None,
               fingerprint: dict) -> FitResult:
    """Train one pass of `route` on `pools` (one pool unless `route.pooled`)."""
    spec, encoding = pools[0].spec, pools[0].encoding
    pairs, unpaired = route.rows == "pairs", route.rows == "unpaired"
    common = {"workdir": workdir, "fingerprint": fingerprint}
    if route.inner:
        return fit_on_inner_hold_outs(objective, train_config, pools[0].cells, spec, encoding,
                                      seeds, pairing if pairs else None,
                                      warm_start=warm_start, self_pairs=self_pairs, **common)
    if route.pooled:
        return fit_pools(objective, train_config, [p.cells for p in pools], spec, encoding,
                         seeds, pairs=pairs, pairing=pairing, unpaired=unpaired,
                         self_pairs=self_pairs, warm_start=warm_start, **common)
    if route.rows == "cells":
        return fit_on_anndata(objective, train_config, pools[0].cells, spec, encoding, seeds,
                              **common)
    return fit_on_pairs(objective, train_config, pools[0].cells, spec, encoding, seeds,
                        None if unpaired else pairing, unpaired=unpaired,
                        warm_start=warm_start, self_pairs=self_pairs, **common)
