"""The peers' side of the metric checks: cell-eval's and pertpy's values and timings.

Runs in the peers' own environment (`benchmarks/requirements-peer-metrics.txt`; it imports
nothing of perturbjax) on arrays written by `tests/metrics/test_peer_parity.py` or
`benchmarks/metric_speed.py`, and writes what the peers compute as JSON:

  metrics-peer-venv/bin/python benchmarks/peer_metrics.py values INPUT.npz OUTPUT.json
  metrics-peer-venv/bin/python benchmarks/peer_metrics.py speed INPUT.npz OUTPUT.json

`values`: cell-eval's `pearson_delta`, `mae`, `discrimination_score` (L1) and overlap at
N = 100, and pertpy's `Distance` (E-distance, linear and RBF MMD, mean pairwise, Euclidean,
Wasserstein), and pertpy 1.0.3's E-distance rebuilt without its self-pairs, as the spec
defines it (`edistance_without_self_pairs`).
`speed`: per group size, each pertpy distance's value (the E-distance's also without
self-pairs) and the best of `repeats` wall times (after one untimed call, which also
compiles ott-jax's Sinkhorn).
"""

from __future__ import annotations

import json
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl

# Our names -> pertpy's `Distance(metric)` and its keyword arguments.
PERTPY = {"edistance": ("edistance", {}), "mean_pairwise": ("mean_pairwise", {}),
          "mmd_linear": ("mmd", {}), "mmd_rbf": ("mmd", {"kernel": "rbf", "gamma": 1.0}),
          "euclidean": ("euclidean", {}), "wasserstein": ("wasserstein", {})}


def _pair(control: np.ndarray, groups: dict[str, np.ndarray]) -> ad.AnnData:
    """One AnnData of control cells and labelled groups (obs `target`), as cell-eval reads."""
    labels = ["control"] * len(control) + [g for g, x in groups.items() for _ in range(len(x))]
    return ad.AnnData(np.vstack([control, *groups.values()]).astype(np.float64),
                      obs=pd.DataFrame({"target": labels},
                                       index=[str(i) for i in range(len(labels))]))


def _de_table(scores: np.ndarray, expressed: np.ndarray, genes: np.ndarray) -> pl.DataFrame:
    """A cell-eval DE table in which genes sort by |score| and only expressed genes pass."""
    return pl.DataFrame({"target": ["stim"] * len(genes), "feature": genes.tolist(),
                         "log2_fold_change": scores, "p_value": np.zeros(len(genes)),
                         "fdr": np.where(expressed, 0.0, 1.0)})


def cell_eval_values(data: dict[str, np.ndarray]) -> dict:
    from cell_eval._types import PerturbationAnndataPair, initialize_de_comparison
    from cell_eval.metrics._anndata import discrimination_score, mae, pearson_delta
    from cell_eval.metrics._de import de_overlap_metric

    genes = data["genes"]
    top = data["top100"]

    def pair(columns):
        real = _pair(data["control"][:, columns], {"stim": data["real"][:, columns]})
        pred = _pair(data["control"][:, columns], {"stim": data["pred"][:, columns]})
        real.var_names = pred.var_names = genes[columns]
        return PerturbationAnndataPair(real, pred, "target", "control")

    everything, top_genes = pair(np.arange(len(genes))), pair(top)
    contexts = [str(c) for c in data["contexts"]]
    real = _pair(data["pool_control"], {c: data[f"real_{c}"] for c in contexts})
    pred = _pair(data["pool_control"], {c: data[f"pred_{c}"] for c in contexts})
    real.var_names = pred.var_names = genes
    comparison = initialize_de_comparison(
        _de_table(data["real_scores"], data["real_expressed"], genes),
        _de_table(data["pred_scores"], data["pred_expressed"], genes))
    return {
        "pearson_delta": pearson_delta(everything)["stim"],
        "pearson_delta_top100": pearson_delta(top_genes)["stim"],
        "mae_top100": mae(top_genes)["stim"],
        "overlap_at_100": de_overlap_metric(comparison, k=100)["stim"],
        "discrimination": discrimination_score(
            PerturbationAnndataPair(real, pred, "target", "control"), metric="l1"),
    }


def pertpy_values(data: dict[str, np.ndarray]) -> dict:
    from pertpy.tools import Distance

    x, y = data["real_pcs"], data["pred_pcs"]
    values = {name: Distance(metric)(x, y, **kwargs) for name, (metric, kwargs) in PERTPY.items()}
    return values | {"edistance_without_self_pairs":
                     edistance_without_self_pairs(x, y, values["edistance"])}


def edistance_without_self_pairs(x: np.ndarray, y: np.ndarray, edistance: float) -> float:
    """pertpy 1.0.3's E-distance in the spec's terms, from pertpy's own within-group means.

    pertpy 1.0.3 averages the within-group distances over all n^2 pairs, the n zero
    self-pairs included; pertpy >= 1.0.4 and the spec average over the n(n - 1) others, so
    each within term is rescaled by n / (n - 1).
    """
    from pertpy.tools import Distance

    pairwise = Distance("mean_pairwise")
    n, m = len(x), len(y)
    return (edistance + pairwise(x, x) * (1 - n / (n - 1))
            + pairwise(y, y) * (1 - m / (m - 1)))


def pertpy_speed(data: dict[str, np.ndarray]) -> dict:
    from pertpy.tools import Distance

    out = {}
    for n in data["sizes"].tolist():
        x, y = data[f"x_{n}"], data[f"y_{n}"]
        for name, (metric, kwargs) in PERTPY.items():
            distance = Distance(metric)
            value = distance(x, y, **kwargs)  # also compiles ott-jax's Sinkhorn at this size
            times = []
            for _ in range(int(data["repeats"])):
                started = time.perf_counter()
                distance(x, y, **kwargs)
                times.append(time.perf_counter() - started)
            out[str(n)] = out.get(str(n), {}) | {name: {"seconds": min(times), "value": value}}
        edistance = out[str(n)]["edistance"]
        edistance["value_without_self_pairs"] = edistance_without_self_pairs(
            x, y, edistance["value"])
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[1] not in ("values", "speed"):
        sys.exit("usage: peer_metrics.py values|speed INPUT.npz OUTPUT.json")
    with np.load(argv[2], allow_pickle=False) as arrays:
        data = {k: arrays[k] for k in arrays.files}
    if argv[1] == "values":
        result = {"cell_eval": cell_eval_values(data), "pertpy": pertpy_values(data)}
    else:
        result = pertpy_speed(data)
    import cell_eval
    import pertpy
    result["versions"] = {"cell_eval": getattr(cell_eval, "__version__", "unknown"),
                          "pertpy": pertpy.__version__}
    with open(argv[3], "w") as f:
        json.dump(result, f, indent=2, default=float)


if __name__ == "__main__":
    main(sys.argv)
