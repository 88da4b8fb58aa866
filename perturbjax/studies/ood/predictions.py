"""The benchmark's predictions as files a user can re-score: `predictions/<model>/<context>.h5ad`.

One AnnData per (model, held-out context): the context's control cells once per decoded
condition (obs `condition`, `perturbjax_prediction`), `X` the mean over seeds, each seed's
prediction in `layers["member_<seed>"]` (a reference, which has no seed, in
`layers["member_reference"]`). The study scores what it reads back from these files.

Beside each, `responses/<model>/<context>.npz` keeps the predicted mean response of each of
the cell's rows (float64, a few hundred kB): what the scores across contexts need when a
finished cell is read back, small enough to commit with the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.files import atomic_target

REFERENCE_MEMBER = "member_reference"


def _member(seed: int | None) -> str:
    return REFERENCE_MEMBER if seed is None else f"member_{seed}"


def write_predictions(path: Path, control: ad.AnnData, condition_key: str, model: str,
                      predictions: dict[str, list[np.ndarray]], runs: dict[str, list[dict]]
                      ) -> None:
    """`predictions[condition][i]` (cells x genes) of the seed in `runs[condition][i]`."""
    conditions = sorted(predictions)
    seeds = [run["seed"] for run in runs[conditions[0]]]
    obs = pd.concat([control.obs.assign(**{condition_key: c}) for c in conditions])
    obs.index = [f"{cell}:{c}" for c in conditions for cell in control.obs_names]
    obs["perturbjax_prediction"] = True
    members = {_member(seed): np.concatenate([np.asarray(predictions[c][i], np.float32)
                                              for c in conditions])
               for i, seed in enumerate(seeds)}
    out = ad.AnnData(np.mean(list(members.values()), axis=0).astype(np.float32), obs=obs,
                     var=control.var.copy(), layers=members)
    out.uns["perturbjax"] = {"model": model, "seeds": [s for s in seeds if s is not None]}
    with atomic_target(path) as tmp:
        out.write_h5ad(tmp)


def read_predictions(path: Path, condition_key: str, runs: dict[str, list[dict]]
                     ) -> dict[str, list[np.ndarray]]:
    """The per-condition, per-seed arrays of a file written by `write_predictions`."""
    saved = ad.read_h5ad(path)
    condition = saved.obs[condition_key].astype(str).to_numpy()
    return {c: [np.asarray(saved.layers[_member(run["seed"])][condition == c])
                for run in seed_runs]
            for c, seed_runs in runs.items()}


def row_key(name: str, condition: str, seed: int | None) -> str:
    """How a row of the table is named in a responses file."""
    return f"{name}|{condition}|{'none' if seed is None else seed}"


def write_responses(path: Path, keys: Sequence[str], responses: Sequence[np.ndarray]) -> None:
    """One predicted response (genes) per row key."""
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, keys=np.asarray(keys, dtype=str),
                            responses=np.stack([np.asarray(r, np.float64) for r in responses]))


def read_responses(path: Path) -> dict[str, np.ndarray]:
    """The row key -> predicted response map of a file written by `write_responses`."""
    with np.load(path) as saved:
        return dict(zip(saved["keys"].tolist(), saved["responses"], strict=True))

