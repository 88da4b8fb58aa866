"""A short hash of an AnnData's content, so that a result can be tied to the data it saw."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp


def content_hash(adata: ad.AnnData, obs_keys: Sequence[str]) -> str:
    """blake2b of X (values and layout), the named obs columns and the gene list.

    Two data sets of the same shape that differ in one value, one label or one gene name get
    different hashes. Costs one pass over X."""
    digest = hashlib.blake2b(digest_size=16)
    x = adata.X
    digest.update(repr((x.shape, str(x.dtype), sp.issparse(x))).encode())
    if sp.issparse(x):
        x = x.tocsr()
        for part in (x.data, x.indices, x.indptr):
            digest.update(np.ascontiguousarray(part).tobytes())
    else:
        digest.update(np.ascontiguousarray(x).tobytes())
    for key in obs_keys:
        digest.update(key.encode() + b"\x00")
        digest.update("\x00".join(adata.obs[key].astype(str)).encode())
    digest.update("\x00".join(map(str, adata.var_names)).encode())
    return digest.hexdigest()


def normalised(record: Any) -> Any:
    """`record` as it reads back from JSON (keys sorted, tuples as lists)."""
    return json.loads(json.dumps(record, sort_keys=True, default=str))
