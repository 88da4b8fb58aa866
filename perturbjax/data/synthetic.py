"""Synthetic single-perturbation data with a known answer (the main job's embedded default).

Each cell has a low-dimensional state h = h_type + noise. Its control expression is
negative-binomial around exp(base + loadings @ h + type markers). The perturbation adds, in
log-rate space, (a) a program shared by every type whose magnitude grows with the state along
one direction, and (b) genes gated on or off by the state. So the response of a held-out type
differs from the global mean shift in both size and genes, yet is a function of its control
state that a model can learn from the other types. `linear_response` > 0 adds (c) a response
on further genes that is linear in the state: the part scVIDR's regression on the control
centroid can recover and a single shared latent vector (scGen) cannot.
"""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from perturbjax.data.schema import PerturbationSpec

SYNTHETIC_SPEC = PerturbationSpec(context_key="cell_type", condition_key="condition",
                                  control_value="control")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic single-perturbation data set."""

    n_types: int = 6
    n_genes: int = 500
    cells_per_group: int = 150  # cells per (type, condition)
    n_factors: int = 4
    n_program_genes: int = 40
    n_gated_genes: int = 40
    n_linear_genes: int = 40
    linear_response: float = 0.0  # size of the linear-in-state response (c); 0: none
    n_markers: int = 20
    state_noise: float = 0.35
    dispersion: float = 5.0  # NB shape: variance = mu + mu^2 / dispersion
    seed: int = 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_perturbation_data(config: SyntheticConfig = SyntheticConfig()) -> ad.AnnData:
    """Counts in `layers['counts']`, log1p(normalize_total) in X, truth in `uns['truth']`.

    `uns['truth']['effect']` is the expected log-rate change per (type, gene), averaged over
    the type's cells; `program_genes` and `gated_genes` index the responding genes.
    """
    rng = np.random.default_rng(config.seed)
    g, k, t = config.n_genes, config.n_factors, config.n_types
    base = np.clip(rng.normal(-0.3, 1.3, g), -4.0, 3.0)
    loadings = rng.normal(0.0, 0.6, (g, k)) * (rng.random((g, k)) < 0.3)
    type_states = rng.normal(0.0, 1.0, (t, k))
    markers = np.zeros((t, g))
    for i in range(t):
        markers[i, rng.choice(g, config.n_markers, replace=False)] = rng.uniform(1.0, 2.0)

    genes = rng.permutation(g)
    program = genes[: config.n_program_genes]
    gated = genes[config.n_program_genes : config.n_program_genes + config.n_gated_genes]
    program_size = rng.uniform(0.8, 2.0, program.size) * rng.choice([1, 1, 1, -1], program.size)
    magnitude_axis = rng.normal(size=k) / np.sqrt(k)
    gated_size = rng.uniform(1.0, 2.0, gated.size)
    gate_axes = rng.normal(size=(gated.size, k))
    linear = genes[config.n_program_genes + config.n_gated_genes :][: config.n_linear_genes]
    # Its own stream, so that data without it stay exactly as they were.
    linear_axes = np.random.default_rng([config.seed, 1]).normal(size=(linear.size, k))
    linear_axes /= np.sqrt(k)

    def effect(states: np.ndarray) -> np.ndarray:
        delta = np.zeros((states.shape[0], g))
        magnitude = np.exp(0.5 * states @ magnitude_axis)
        delta[:, program] = magnitude[:, None] * program_size
        delta[:, gated] = gated_size * _sigmoid(3.0 * states @ gate_axes.T)
        if config.linear_response:
            delta[:, linear] = config.linear_response * states @ linear_axes.T
        return delta

    type_names = [f"type_{i}" for i in range(t)]
    counts, obs, effects = [], [], []
    for i, name in enumerate(type_names):
        for condition in ("control", "stimulated"):
            n = config.cells_per_group
            states = type_states[i] + config.state_noise * rng.normal(size=(n, k))
            log_rate = base + states @ loadings.T + markers[i]
            if condition == "stimulated":
                delta = effect(states)
                log_rate = log_rate + delta
                effects.append(delta.mean(0))
            size_factor = rng.lognormal(0.0, 0.25, (n, 1))
            mu = np.exp(log_rate) * size_factor
            rate = rng.gamma(config.dispersion, mu / config.dispersion)
            counts.append(rng.poisson(rate))
            obs.append(pd.DataFrame({"cell_type": name, "condition": condition}, index=range(n)))

    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"cell_{i}" for i in range(len(obs))]
    for key in ("cell_type", "condition"):
        obs[key] = obs[key].astype("category")
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(g)])
    adata = ad.AnnData(np.vstack(counts).astype(np.float32), obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.X = adata.X.astype(np.float32)
    adata.uns["truth"] = {
        "effect": np.stack(effects),
        "types": np.array(type_names),
        "program_genes": np.sort(program),
        "gated_genes": np.sort(gated),
        "linear_genes": np.sort(linear) if config.linear_response else np.array([], int),
    }
    return adata
