"""From AnnData to a trained ensemble and back: condition codes, device batches, predictions.

Every learned model goes through these functions, so all of them see the same training pool,
the same validation split and predict from the same control matrix. Models trained on
optimal-transport pairs (`fit_on_pairs`) pair the training cells and the validation cells
separately, inside that same split; models of two unpaired domains train on an
`unpaired_table` of the same split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import anndata as ad
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import is_control, stratified_validation_mask
from perturbjax.models.compact_space import CompactSpace
from perturbjax.ot import PairingConfig, pair_cells
from perturbjax.train import FitResult, TrainConfig, fit, predict_members
from perturbjax.train.objective import Objective


@dataclasses.dataclass(frozen=True)
class ConditionEncoding:
    """Sorted condition labels, `control` among them; a cell's code is its label's position."""

    labels: tuple[str, ...]
    control: str

    def __post_init__(self) -> None:
        if self.control not in self.labels:
            raise ValueError(f"the control condition '{self.control}' is not among the "
                             f"conditions {list(self.labels)}")

    @classmethod
    def from_adata(cls, adata: ad.AnnData, spec: PerturbationSpec) -> ConditionEncoding:
        return cls(tuple(sorted(adata.obs[spec.condition_key].astype(str).unique())),
                   str(spec.control_value))

    def code(self, label: str) -> int:
        if label not in self.labels:
            raise KeyError(f"condition '{label}' is not among the encoded {list(self.labels)}")
        return self.labels.index(label)

    def codes(self, adata: ad.AnnData, spec: PerturbationSpec) -> np.ndarray:
        values = adata.obs[spec.condition_key].astype(str)
        codes = pd.Categorical(values, categories=self.labels).codes
        if (codes < 0).any():
            self.code(values[codes < 0].iloc[0])  # raises, naming the unknown condition
        return codes.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class TrainingPool:
    """The cells a model trains on, with their schema and condition codes."""

    cells: ad.AnnData
    spec: PerturbationSpec
    encoding: ConditionEncoding

    def task(self) -> Task:
        return Task.from_pool(self.cells, self.spec, self.encoding)


@dataclasses.dataclass(frozen=True)
class Task:
    """What a model is built for: its genes, condition codes, training contexts, the
    number of training cells and, for a model below gene space, the compact space fitted on
    its training cells (`compact_space`; set by `ModelFamily`): the one input every `build`
    takes besides its configuration."""

    genes: tuple[str, ...]
    encoding: ConditionEncoding
    contexts: tuple[str, ...] = ()
    n_cells: int | None = None
    space: CompactSpace | None = None

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @classmethod
    def of(cls, n_genes: int, labels: Sequence[str], control: str,
           n_cells: int | None = None) -> Task:
        """A task over genes named by position (for models built outside a data set)."""
        return cls(tuple(f"gene_{i}" for i in range(n_genes)),
                   ConditionEncoding(tuple(labels), control), n_cells=n_cells)

    @classmethod
    def from_pool(cls, train: ad.AnnData, spec: PerturbationSpec,
                  encoding: ConditionEncoding) -> Task:
        """The task of training on the cells of `train`."""
        return cls(tuple(map(str, train.var_names)), encoding,
                   tuple(sorted(train.obs[spec.context_key].astype(str).unique())), train.n_obs)


# Context summaries for models that describe a context by its own control cells: the mean
# control cell of each context of a pair table's pool (shared, (contexts, genes)), and the one
# context's control mean that a batch of its control cells is predicted with ((genes,)).
CONTEXT_CONTROL_MEANS = "context_control_means"
CONTROL_MEAN = "control_mean"


class CellBatch(TypedDict, total=False):
    """The arrays a cell model's objective sees per mini-batch (its rows gathered, the shared
    and fold arrays whole). A table of cells carries `x`; a pair table carries `source_row` and
    `target_row` into the shared `cells`; `condition` is the target's condition code."""

    x: jax.Array  # (rows, genes) expression
    condition: jax.Array  # (rows,) int32 condition code (`ConditionEncoding`)
    context: jax.Array  # (rows,) int32 context code (`context_codes`)
    source_row: jax.Array  # (rows,) int32: the input cell's row of `cells`
    target_row: jax.Array  # (rows,) int32: the target cell's row of `cells`
    cells: jax.Array  # (cells, genes), shared: the pool a pair table indexes
    context_control_means: jax.Array  # (contexts, genes), shared: see CONTEXT_CONTROL_MEANS


def batch_of(adata: ad.AnnData, codes: np.ndarray,
             contexts: np.ndarray | None = None) -> CellBatch:
    """Device arrays of expression and condition codes (and context codes, if given)."""
    batch = CellBatch(x=jnp.asarray(np.asarray(adata.X, np.float32)),
                      condition=jnp.asarray(codes, jnp.int32))
    if contexts is not None:
        batch["context"] = jnp.asarray(contexts, jnp.int32)
    return batch


def context_codes(adata: ad.AnnData, spec: PerturbationSpec) -> np.ndarray:
    """Each cell's context as its position among the sorted contexts of `adata`."""
    return pd.Categorical(adata.obs[spec.context_key].astype(str)).codes.astype(np.int32)


def fit_on_anndata(objective: Objective, train_config: TrainConfig, train: ad.AnnData,
                   spec: PerturbationSpec, encoding: ConditionEncoding, seeds: Sequence[int],
                   workdir: str | Path | None = None, validation_seed: int = 0,
                   fingerprint: dict | None = None) -> FitResult:
    """Train on `train` minus a stratified validation split (same split for every seed).
    Batches carry `x`, the condition codes and the context codes (`context_codes`)."""
    codes, contexts = encoding.codes(train, spec), context_codes(train, spec)
    val = stratified_validation_mask(train, spec, train_config.validation_fraction,
                                     validation_seed)
    return fit(objective, batch_of(train[~val], codes[~val], contexts[~val]),
               batch_of(train[val], codes[val], contexts[val]),
               seeds, train_config, workdir=workdir, fingerprint=fingerprint)


def pairing_coordinates(adata: ad.AnnData, n_components: int = 50, seed: int = 0
                        ) -> np.ndarray:
    """PCA coordinates of the cells, the space optimal-transport pairs are made in."""
    x = np.asarray(adata.X, np.float32)
    n_components = min(n_components, x.shape[0] - 1, x.shape[1])
    return PCA(n_components=n_components, random_state=seed).fit_transform(x).astype(np.float32)


def pair_table(rows: np.ndarray, coordinates: np.ndarray, adata: ad.AnnData,
               spec: PerturbationSpec, encoding: ConditionEncoding,
               pairing: PairingConfig, seed: int = 0, self_pairs: bool = True) -> CellBatch:
    """Training rows for cells `rows` of `adata`: each control cell -> its OT partner under
    every perturbed condition of its context, and (with `self_pairs`) -> itself under
    control. `source_row` and `target_row` index `adata`'s rows; `condition` is the target's
    code."""
    context = adata.obs[spec.context_key].astype(str).to_numpy()[rows]
    condition = adata.obs[spec.condition_key].astype(str).to_numpy()[rows]
    pairs = pair_cells(coordinates[rows], context, condition, str(spec.control_value),
                       pairing, seed=seed)
    controls = rows[condition == str(spec.control_value)] if self_pairs else rows[:0]
    source = np.concatenate([rows[pairs.control], controls])
    target = np.concatenate([rows[pairs.partner], controls])
    return CellBatch(source_row=jnp.asarray(source, jnp.int32),
                     target_row=jnp.asarray(target, jnp.int32),
                     condition=jnp.asarray(encoding.codes(adata, spec)[target], jnp.int32),
                     context=jnp.asarray(context_codes(adata, spec)[source], jnp.int32))


def shared_cells(adata: ad.AnnData, spec: PerturbationSpec) -> CellBatch:
    """The arrays every step of a pair-table fit sees whole: the pool's cells, and the mean
    control cell of each of its contexts (indexed by a row's `context`; zeros for a context
    without control cells)."""
    x = np.asarray(adata.X, np.float32)
    codes, control = context_codes(adata, spec), is_control(adata, spec)
    means = np.zeros((codes.max() + 1, x.shape[1]), np.float32)
    for code in np.unique(codes[control]):
        means[code] = x[control & (codes == code)].mean(axis=0)
    return CellBatch(cells=jnp.asarray(x), context_control_means=jnp.asarray(means))


def unpaired_table(rows: np.ndarray, adata: ad.AnnData, spec: PerturbationSpec,
                   seed: int = 0) -> CellBatch:
    """Training rows for a model of two unpaired domains (scPreGAN): the control cells and
    the perturbed cells among `rows` of `adata`, each domain shuffled and the smaller one
    cycled to the larger one's size, side by side. `source_row` is a control cell and
    `target_row` a perturbed one; which cells share a row means nothing to such a model."""
    control = is_control(adata, spec)[rows]
    domains = [rows[control], rows[~control]]
    if not all(len(d) for d in domains):
        raise ValueError("an unpaired table needs control and perturbed cells; got "
                         f"{len(domains[0])} control and {len(domains[1])} perturbed")
    rng = np.random.default_rng(seed)
    size = max(map(len, domains))
    source, target = (np.resize(rng.permutation(d), size) for d in domains)
    return CellBatch(source_row=jnp.asarray(source, jnp.int32),
                     target_row=jnp.asarray(target, jnp.int32))


def source_and_target(batch: CellBatch) -> tuple[jax.Array, jax.Array]:
    """(input cells, target cells) of a batch: a pair table's rows of the shared `cells`
    (see `pair_table`), or `x` as its own target."""
    if "source_row" in batch:
        return batch["cells"][batch["source_row"]], batch["cells"][batch["target_row"]]
    return batch["x"], batch["x"]


def pair_tables(train: ad.AnnData, spec: PerturbationSpec, encoding: ConditionEncoding,
                train_config: TrainConfig, pairing: PairingConfig | None = None,
                validation_seed: int = 0, unpaired: bool = False, self_pairs: bool = True
                ) -> tuple[CellBatch, CellBatch]:
    """(training, validation) rows of `fit_on_pairs` on `train`: pair tables whose
    `source_row` / `target_row` index `train`'s cells (see `fit_on_pairs`)."""
    pairing = pairing or PairingConfig()
    val = stratified_validation_mask(train, spec, train_config.validation_fraction,
                                     validation_seed)
    if not (is_control(train, spec) & val).any():
        raise ValueError("the validation split holds no control cells to pair")
    if unpaired:
        return tuple(unpaired_table(np.flatnonzero(mask), train, spec) for mask in (~val, val))
    coordinates = pairing_coordinates(train)
    return tuple(pair_table(np.flatnonzero(mask), coordinates, train, spec, encoding,
                            pairing, self_pairs=self_pairs) for mask in (~val, val))


def fit_on_pairs(objective: Objective, train_config: TrainConfig, train: ad.AnnData,
                 spec: PerturbationSpec, encoding: ConditionEncoding, seeds: Sequence[int],
                 pairing: PairingConfig | None = None, workdir: str | Path | None = None,
                 validation_seed: int = 0, fingerprint: dict | None = None,
                 warm_start: FitResult | None = None, unpaired: bool = False,
                 self_pairs: bool = True) -> FitResult:
    """Train control -> OT partner (and control -> itself) on `train`, with the validation
    split of `fit_on_anndata`; the pairs are made in a PCA of `train`, separately within the
    training and the validation cells, and always within a (context, condition) group.
    `warm_start` fine-tunes an earlier result (the "plus OT" variants); `pairing` defaults
    to `PairingConfig()`; `self_pairs` False leaves out the control -> itself rows.
    `unpaired` trains on `unpaired_table`s instead (no pairing)."""
    tables = pair_tables(train, spec, encoding, train_config, pairing, validation_seed,
                         unpaired, self_pairs)
    return fit(objective, tables[0], tables[1], seeds, train_config, workdir=workdir,
               fingerprint=fingerprint, shared=shared_cells(train, spec),
               warm_start=warm_start)


def predict_anndata(objective: Objective, result: FitResult, control: ad.AnnData,
                    spec: PerturbationSpec, encoding: ConditionEncoding,
                    condition: str) -> list[ad.AnnData]:
    """One AnnData per seed: the control cells decoded under `condition`, obs kept
    (with the condition column set to the predicted condition)."""
    target = np.full(control.n_obs, encoding.code(condition), np.int32)
    values = predict_members(objective, result, batch_of(control, target))
    out = []
    for seed, x in zip(result.seeds, values, strict=True):
        obs = control.obs.copy()
        obs[spec.condition_key] = condition
        pred = ad.AnnData(np.asarray(x, np.float32), obs=obs, var=control.var.copy())
        pred.uns["seed"] = seed
        out.append(pred)
    return out


def predict_decoded(objective: Objective, result: FitResult, pool: TrainingPool,
                    control: ad.AnnData, condition: str) -> list[np.ndarray]:
    """The default prediction of a conditional model: one array per member, the control
    cells decoded under `condition`."""
    return [p.X for p in predict_anndata(objective, result, control, pool.spec, pool.encoding,
                                         condition)]
