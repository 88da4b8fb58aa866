"""Synthetic multi-dose and cross-species data with a known answer, in the published schemas.

Multi-dose (scVIDR's Nault schema: obs `celltype`, numeric `Dose`, `condition` = dose label):
cell types of unequal size, rare ones included, respond to 8 doses through Hill curves,
effect(t, g, d) = A[t, g] d^h / (EC50[t]^h + d^h): monotone and saturating, with a
type-specific EC50 and amplitude (some types barely respond).

Cross-species (scGen's species schema: obs `species`, `condition` in {unst, LPS6}): each
species has its own baseline, and the response is one shared programme scaled per species
plus a little species-specific noise, so a held-out species' response is mostly, but not
only, the others'.

Both return log1p(normalize_total) in X, raw counts in `layers['counts']` and the truth in
`uns['truth']`.
"""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from perturbjax.data.designs import dose_label

NAULT_DOSES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # TCDD, ug/kg (Nault 2021)


@dataclasses.dataclass(frozen=True)
class MultiDoseConfig:
    """Size and shape of the synthetic multi-dose set.

    Attributes:
      n_types: cell types; their sizes fall geometrically from `largest` to `smallest` cells
        per (type, dose), so the last types are rare.
      doses: the non-zero doses (control is dose 0).
      n_response_genes: genes with a Hill response (the rest only differ by type).
      hill: the Hill coefficient; EC50s are log-uniform between `ec50_range`.
      insensitive_types: types whose amplitude is scaled down tenfold.
      dose_response: "hill" (above) or "log_linear": effect = A[t, g] ln(1 + d) / ln(1 + d_max),
        the curve vidrMult assumes, for a test with a known answer.
    """

    n_types: int = 10
    n_genes: int = 400
    doses: tuple[float, ...] = NAULT_DOSES
    largest: int = 120
    smallest: int = 12
    n_response_genes: int = 60
    hill: float = 1.5
    ec50_range: tuple[float, float] = (0.1, 3.0)
    insensitive_types: int = 2
    dispersion: float = 5.0
    dose_response: str = "hill"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dose_response not in ("hill", "log_linear"):
            raise ValueError(f"MultiDoseConfig.dose_response must be 'hill' or 'log_linear', "
                             f"got '{self.dose_response}'")
        if not 0 < self.n_response_genes <= self.n_genes:
            raise ValueError(f"n_response_genes ({self.n_response_genes}) must lie in "
                             f"1..n_genes ({self.n_genes})")
        if not 0 <= self.insensitive_types <= self.n_types or min(self.doses) <= 0:
            raise ValueError("insensitive_types must lie in 0..n_types and doses be > 0")


def hill(dose: np.ndarray, ec50: np.ndarray, coefficient: float) -> np.ndarray:
    """The fraction of the maximal effect reached at `dose` (0 at dose 0, -> 1)."""
    dose = np.asarray(dose, float)
    return dose**coefficient / (ec50**coefficient + dose**coefficient)


def _counts_to_anndata(counts: list[np.ndarray], obs: list[pd.DataFrame], genes: list[str],
                       categorical: tuple[str, ...], truth: dict) -> ad.AnnData:
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"cell_{i}" for i in range(len(obs))]
    for key in categorical:
        obs[key] = obs[key].astype("category")
    adata = ad.AnnData(np.vstack(counts).astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=genes))
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.X = adata.X.astype(np.float32)
    adata.uns["truth"] = truth
    return adata


def _nb_counts(log_rate: np.ndarray, n: int, dispersion: float,
               rng: np.random.Generator) -> np.ndarray:
    mean = np.exp(log_rate)[None, :] * rng.lognormal(0.0, 0.25, (n, 1))
    return rng.poisson(rng.gamma(dispersion, mean / dispersion))


def make_multidose_data(config: MultiDoseConfig = MultiDoseConfig()) -> ad.AnnData:
    """Cells of every (type, dose) including control; `uns['truth']` holds the amplitudes
    (types x genes), EC50s (types) and Hill coefficient, and `effect` (types x doses x genes,
    the expected log-rate change at each non-zero dose)."""
    rng = np.random.default_rng(config.seed)
    g, t = config.n_genes, config.n_types
    base = np.clip(rng.normal(-0.3, 1.2, g), -4.0, 3.0)
    markers = rng.normal(0.0, 0.8, (t, g)) * (rng.random((t, g)) < 0.1)
    response = rng.choice(g, config.n_response_genes, replace=False)
    amplitude = np.zeros((t, g))
    shared = rng.uniform(0.8, 2.5, response.size) * rng.choice([1, 1, -1], response.size)
    type_scale = rng.uniform(0.6, 1.4, t)
    type_scale[rng.choice(t, config.insensitive_types, replace=False)] *= 0.1
    variation = rng.uniform(0.7, 1.3, (t, response.size))
    amplitude[:, response] = type_scale[:, None] * shared * variation
    low, high = np.log(config.ec50_range[0]), np.log(config.ec50_range[1])
    ec50 = np.exp(rng.uniform(low, high, t))
    sizes = np.round(np.geomspace(config.largest, config.smallest, t)).astype(int)
    doses = np.asarray(config.doses, float)
    if config.dose_response == "hill":
        fraction = hill(doses, ec50[:, None], config.hill)
    else:
        fraction = np.broadcast_to(np.log1p(doses) / np.log1p(doses.max()), (t, doses.size))
    effect = amplitude[:, None, :] * fraction[:, :, None]

    types = [f"type_{i}" for i in range(t)]
    counts, obs = [], []
    for i, name in enumerate(types):
        for j, dose in enumerate((0.0, *doses)):
            shift = effect[i, j - 1] if dose > 0 else 0.0
            counts.append(_nb_counts(base + markers[i] + shift, sizes[i], config.dispersion, rng))
            obs.append(pd.DataFrame({"celltype": name, "Dose": dose,
                                     "condition": dose_label(dose)}, index=range(sizes[i])))
    truth = {"types": np.array(types), "doses": doses, "amplitude": amplitude, "ec50": ec50,
             "hill": config.hill, "effect": effect, "response_genes": np.sort(response)}
    return _counts_to_anndata(counts, obs, [f"gene_{k}" for k in range(g)],
                              ("celltype", "condition"), truth)


@dataclasses.dataclass(frozen=True)
class SpeciesConfig:
    """Size of the synthetic cross-species set (species are the held-out unit)."""

    species: tuple[str, ...] = ("mouse", "rat", "rabbit", "pig")
    n_genes: int = 400
    cells_per_group: int = 120
    n_response_genes: int = 50
    baseline_sd: float = 0.7
    specific_sd: float = 0.2
    dispersion: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.n_response_genes <= self.n_genes or len(self.species) < 2:
            raise ValueError(f"need 1..n_genes ({self.n_genes}) response genes "
                             f"(got {self.n_response_genes}) and at least two species")


def make_species_data(config: SpeciesConfig = SpeciesConfig()) -> ad.AnnData:
    """unst / LPS6 cells of every species; `uns['truth']` holds the shared programme, each
    species' scale and its expected log-rate change (`effect`, species x genes)."""
    rng = np.random.default_rng(config.seed)
    g = config.n_genes
    base = np.clip(rng.normal(-0.3, 1.2, g), -4.0, 3.0)
    response = rng.choice(g, config.n_response_genes, replace=False)
    programme = np.zeros(g)
    programme[response] = rng.uniform(0.8, 2.5, response.size) * rng.choice([1, 1, -1],
                                                                             response.size)
    scale = rng.uniform(0.5, 1.5, len(config.species))
    counts, obs, effects = [], [], []
    for k, name in enumerate(config.species):
        baseline = base + rng.normal(0.0, config.baseline_sd, g)
        effect = scale[k] * programme
        effect[response] += rng.normal(0.0, config.specific_sd, response.size)
        effects.append(effect)
        for condition, shift in (("unst", 0.0), ("LPS6", effect)):
            n = config.cells_per_group
            counts.append(_nb_counts(baseline + shift, n, config.dispersion, rng))
            obs.append(pd.DataFrame({"species": name, "condition": condition}, index=range(n)))
    truth = {"species": np.array(config.species), "programme": programme, "scale": scale,
             "effect": np.stack(effects), "response_genes": np.sort(response)}
    return _counts_to_anndata(counts, obs, [f"gene_{k}" for k in range(g)],
                              ("species", "condition"), truth)
