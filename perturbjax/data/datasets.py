"""Loaders for the published file formats, each validated against its `PerturbationSpec`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from perturbjax.data.schema import KANG_SPEC, DataValidationError, PerturbationSpec, validate

DATA_ENV = "PERTURBJAX_DATA"


def shared_data_dir() -> Path | None:
    """The folder of real development data: `$PERTURBJAX_DATA`, else `../shared/data`."""
    candidates = [os.environ.get(DATA_ENV)] if os.environ.get(DATA_ENV) else []
    candidates.append(str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    candidates.append(str(Path.cwd().parent / "shared" / "data"))
    for candidate in candidates:
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


def load_h5ad(
    path: str | os.PathLike,
    spec: PerturbationSpec,
    held_out: Sequence[str] | None = None,
) -> ad.AnnData:
    """Read an h5ad file into memory, densify X as float32 and validate it against `spec`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such h5ad file")
    try:
        adata = ad.read_h5ad(path)
    except OSError as err:
        raise DataValidationError(f"{path}: not a readable h5ad file ({err})") from err
    validate(adata, spec, held_out=held_out, source=str(path))
    adata.X = (adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)).astype(
        np.float32
    )
    adata.obs[spec.context_key] = adata.obs[spec.context_key].astype(str).astype("category")
    adata.obs[spec.condition_key] = adata.obs[spec.condition_key].astype(str).astype("category")
    adata.uns["source"] = str(path)
    return adata


def load_kang(
    data_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "valid"),
) -> ad.AnnData:
    """scGen's Kang 2018 PBMC files (`train_pbmc.h5ad`, `valid_pbmc.h5ad`), log-normalised.

    Reads whichever of the requested splits exist in `data_dir` (at least one must) and
    concatenates them, keeping `obs['split']`.
    """
    data_dir = Path(data_dir)
    unknown = set(splits) - {"train", "valid"}
    if unknown:
        raise ValueError(f"unknown Kang splits {sorted(unknown)}; expected 'train' and/or 'valid'")
    paths = {s: data_dir / f"{s}_pbmc.h5ad" for s in splits}
    present = {s: p for s, p in paths.items() if p.is_file()}
    if not present:
        raise FileNotFoundError(
            f"{data_dir}: none of {[p.name for p in paths.values()]} found "
            "(scGen's Kang files: train_pbmc.h5ad / valid_pbmc.h5ad)"
        )
    parts = {s: load_h5ad(p, KANG_SPEC) for s, p in present.items()}
    if len(parts) == 1:
        (split, adata), = parts.items()
        adata.obs["split"] = split
        return adata
    adata = ad.concat(parts, label="split", index_unique="-")
    for key in (KANG_SPEC.context_key, KANG_SPEC.condition_key):
        adata.obs[key] = adata.obs[key].astype("category")
    return adata
