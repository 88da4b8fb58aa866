"""Loaders for the published file formats, each validated against its `PerturbationSpec`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbjax.data.schema import KANG_SPEC, DataValidationError, PerturbationSpec, validate
from perturbjax.errors import PerturbjaxError

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


def data_folder(given: str | None, needed_for: str) -> Path:
    """`given`, else `shared_data_dir()`, else an error saying what needs the folder and how
    to name it."""
    if given and not Path(given).is_dir():
        raise PerturbjaxError(f"data_dir '{given}': no such folder (needed for {needed_for})")
    folder = Path(given) if given else shared_data_dir()
    if folder is None:
        raise PerturbjaxError(f"no data folder for {needed_for}: set data_dir (--data_dir) or "
                              f"{DATA_ENV}")
    return folder


def _read(path: Path) -> ad.AnnData:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such h5ad file")
    try:
        return ad.read_h5ad(path)
    except OSError as err:
        raise DataValidationError(f"{path}: not a readable h5ad file ({err})") from err


def dense_x(x, what: str = "the expression matrix") -> np.ndarray:
    """An expression matrix as the dense float32 array every model reads (h5ad files
    usually hold a sparse CSR matrix): cells x genes x 4 bytes. A matrix that would take more
    than half of this machine's memory is refused, naming its size, before it is made."""
    needed = 4 * int(np.prod(x.shape))
    available = _physical_memory()
    if available and needed > available // 2:
        raise PerturbjaxError(f"{what}: {x.shape[0]} cells x {x.shape[1]} genes take "
                          f"{needed / 2**30:.1f} GiB as dense float32, more than half of this "
                          f"machine's {available / 2**30:.1f} GiB; keep fewer genes (HVGs) or "
                          "cells")
    return (x.toarray() if sp.issparse(x) else np.asarray(x)).astype(np.float32)


def _physical_memory() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _checked(adata: ad.AnnData, spec: PerturbationSpec, held_out: Sequence[str] | None,
             source: str) -> ad.AnnData:
    """Validate, then densify X as float32 and make the key columns categorical strings."""
    validate(adata, spec, held_out=held_out, source=source)
    adata.X = dense_x(adata.X)
    for key in (spec.context_key, spec.condition_key):
        adata.obs[key] = adata.obs[key].astype(str).astype("category")
    adata.uns["source"] = source
    return adata


def load_h5ad(
    path: str | os.PathLike,
    spec: PerturbationSpec,
    held_out: Sequence[str] | None = None,
) -> ad.AnnData:
    """Read an h5ad file into memory, validate it against `spec`, densify X as float32."""
    return _checked(_read(Path(path)), spec, held_out, str(path))


def load_kang(
    data_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "valid"),
) -> ad.AnnData:
    """scGen's Kang 2018 PBMC files (`train_pbmc.h5ad`, `valid_pbmc.h5ad`), log-normalised.

    Reads whichever of the requested splits exist in `data_dir` (at least one must),
    concatenates them, keeping `obs['split']`, and validates the result as a whole.
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
    parts = {s: _read(p) for s, p in present.items()}
    adata = ad.concat(parts, label="split", index_unique="-") if len(parts) > 1 else (
        next(iter(parts.values())))
    adata.obs["split"] = pd.Categorical(
        np.repeat(list(parts), [a.n_obs for a in parts.values()]))
    return _checked(adata, KANG_SPEC, None, " + ".join(str(p) for p in present.values()))
