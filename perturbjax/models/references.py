"""References every table must include: a learned model that loses to them has learned
nothing that a one-line baseline does not give.

- `control`: the held-out context's control cells, unchanged;
- `mean_shift`: the source documents' shift, mean(perturbed) - mean(control) over the pooled
  training contexts (cell-type composition enters it: the two means cover different cells);
- `mean_shift_balanced`: the mean over training contexts of each context's own shift;
- `linear`: a ridge regression across training contexts of each context's shift on its
  control centroid in a PCA of the training pool, read at the held-out context's centroid
  (scVIDR's idea without the VAE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
from sklearn.decomposition import PCA

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import HoldOut, is_control
from perturbjax.errors import PerturbjaxError
from perturbjax.models.effect_references import ridge_effect
from perturbjax.models.fitting import ConditionEncoding, TrainingPool
from perturbjax.models.registry import ModelDefaults
from perturbjax.models.settings import FitSettings

LINEAR_COMPONENTS = 50


def predict_control(split: HoldOut, spec: PerturbationSpec, condition: str) -> np.ndarray:
    """The prediction is the held-out context's control cells, unchanged."""
    return np.asarray(split.control.X, dtype=np.float32)


def predict_mean_shift(split: HoldOut, spec: PerturbationSpec, condition: str) -> np.ndarray:
    """x_ctrl + mean(perturbed) - mean(control), both means over the training contexts.

    Only the contexts other than the held-out one enter the means, so the shift is estimated
    where both conditions were observed.
    """
    train = split.train
    other = (train.obs[spec.context_key].astype(str) != split.context).to_numpy()
    perturbed = other & (train.obs[spec.condition_key].astype(str) == condition).to_numpy()
    control = other & is_control(train, spec)
    if not perturbed.any():
        raise ValueError(f"no training cells with condition '{condition}' for the mean shift")
    shift = train.X[perturbed].mean(0) - train.X[control].mean(0)
    return np.asarray(split.control.X + shift, dtype=np.float32)


def context_shifts(split: HoldOut, spec: PerturbationSpec,
                   condition: str) -> tuple[list[str], np.ndarray]:
    """The training contexts that hold both control and `condition` cells, and each one's
    shift mean(perturbed) - mean(control) (contexts x genes, float64)."""
    train = split.train
    contexts = train.obs[spec.context_key].astype(str).to_numpy()
    perturbed = (train.obs[spec.condition_key].astype(str) == condition).to_numpy()
    control = is_control(train, spec)
    names, shifts = [], []
    for context in sorted(set(contexts) - {split.context}):
        here = contexts == context
        if (here & perturbed).any() and (here & control).any():
            names.append(context)
            shifts.append(np.asarray(train.X[here & perturbed], np.float64).mean(0)
                          - np.asarray(train.X[here & control], np.float64).mean(0))
    if not names:
        raise ValueError(f"no training context holds both control and '{condition}' cells")
    return names, np.stack(shifts)


def predict_mean_shift_balanced(split: HoldOut, spec: PerturbationSpec,
                                condition: str) -> np.ndarray:
    """x_ctrl + the mean over training contexts of each context's own shift."""
    shift = context_shifts(split, spec, condition)[1].mean(axis=0)
    return np.asarray(split.control.X + shift, dtype=np.float32)


def predict_linear(split: HoldOut, spec: PerturbationSpec, condition: str) -> np.ndarray:
    """x_ctrl + a ridge prediction of the held-out context's shift from its control centroid.

    The PCA (at most 50 components) is fitted on the training pool; each training context's
    shift is regressed on the centroid of its control cells there, one penalty for all genes
    chosen by leave-one-context-out error (`effect_references.ridge_effect`). With a large
    penalty it falls back to `mean_shift_balanced`.
    """
    names, shifts = context_shifts(split, spec, condition)
    train = split.train
    n_components = min(LINEAR_COMPONENTS, train.n_obs - 1, train.n_vars)
    pca = PCA(n_components=n_components, random_state=0).fit(np.asarray(train.X))
    contexts = train.obs[spec.context_key].astype(str).to_numpy()
    control = is_control(train, spec)
    centroids = np.stack([pca.transform(np.asarray(train.X[(contexts == c) & control])).mean(0)
                          for c in names])
    held_out = pca.transform(np.asarray(split.control.X)).mean(0, keepdims=True)
    shift = ridge_effect(shifts, centroids, held_out)[0]
    return np.asarray(split.control.X + shift, dtype=np.float32)


Rule = Callable[[HoldOut, PerturbationSpec, str], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ReferenceFit:
    """A reference "fitted" on a pool: it keeps the pool, and predicts by its rule."""

    model: ReferenceModel
    pool: TrainingPool
    seeds: tuple[int | None, ...] = (None,)

    def predict(self, control: ad.AnnData, condition: str) -> list[np.ndarray]:
        """The rule's one prediction for `control`, the cells of one context; a context the
        pool also holds is left out of the rule's training contexts, as when held out."""
        spec = self.pool.spec
        contexts = sorted(set(control.obs[spec.context_key].astype(str)))
        if len(contexts) != 1:
            raise PerturbjaxError(f"reference '{self.model.name}' predicts the control cells "
                                  f"of one context at a time; got contexts {contexts[:5]}")
        split = HoldOut(contexts[0], self.pool.cells, control, control[:0])
        return [self.model.rule(split, spec, condition)]

    def runs(self, condition: str) -> list[dict]:
        return [{"seed": None}]

    def history(self) -> dict:
        return {}

    def save(self, path: Path) -> list[dict[str, Any]]:
        """Write the pool's cells (all a reference needs) under `path/part_0`."""
        (path / "part_0").mkdir(parents=True, exist_ok=True)
        self.pool.cells.write_h5ad(path / "part_0" / "training_cells.h5ad")
        return [{"folder": "part_0", "labels": list(self.pool.encoding.labels)}]


@dataclasses.dataclass(frozen=True)
class ReferenceModel(ModelDefaults):
    """A deterministic reference behind the model interface (`registry.Model`): no training,
    one prediction whatever the seeds. `floor` marks the trivial references that calibrated
    scores are measured from."""

    name: str
    rule: Rule
    floor: bool = False
    role = "reference"
    decodes_unseen_conditions = False
    doses_only = False

    def schedule(self, settings: FitSettings) -> None:
        return None

    def describe(self, schedule: None, settings: FitSettings) -> dict[str, str]:
        return {"configuration": "reference", "budget": "no training"}

    def fit(self, pool: TrainingPool, seeds: Sequence[int], settings: FitSettings,
            workdir: Path | None = None, conditions: Sequence[str] | None = None
            ) -> ReferenceFit:
        return ReferenceFit(self, pool)


    def load_trained(self, path: Path, entries: list[dict[str, Any]], settings: FitSettings,
                     spec: PerturbationSpec, control: str) -> ReferenceFit:
        """The pool `ReferenceFit.save` wrote under `path`."""
        cells = ad.read_h5ad(path / "part_0" / "training_cells.h5ad")
        encoding = ConditionEncoding(tuple(entries[0]["labels"]), control)
        return ReferenceFit(self, TrainingPool(cells, spec, encoding))
