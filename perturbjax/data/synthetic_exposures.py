"""Semi-synthetic signature exposures from real parts, with a known answer.

No public single-cell data set has both expression and per-cell exposures. This generator
keeps everything real that can be: the cells' expression (CellBench raw counts), the
marginal distribution of each signature's exposure (560 breast cancers, Nik-Zainal 2016) and
the signatures' mutational spectra (COSMIC v3.4). What it invents is the link: each
signature's exposure is a monotone function of a sparse linear score of a few genes (some of
them specific to the signature, some shared by all) plus noise. Mutation catalogues are then
M = E S^T + Poisson noise. `uns['truth']` records the genes behind each signature.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from perturbjax.data.cellbench import ALL_RUNS, SYMBOLS_FILE, load_cellbench, read_gene_symbols
from perturbjax.data.exposures import load_signature_profiles
from perturbjax.data.preprocess import log_cpm

EXPOSURES_FILE = "signatures/nikzainal560_breast_sbs_exposures.csv"
COSMIC_FILE = "signatures/COSMIC_v3.4_SBS_GRCh38.txt"


@dataclasses.dataclass(frozen=True)
class ExposureSimConfig:
    """Size and difficulty of the semi-synthetic exposure data.

    min_prevalence: keep the signatures non-zero in at least this share of the 560 tumours
    (0.85 keeps six: SBS1, 2, 5, 8, 13, 18, like the original's six). signal: share of the score's
    variance that comes from the genes (the rest is noise), before the monotone map.
    program_pool: the genes behind the exposures are drawn from this many most variable
    genes (log-CPM), as real drivers of a cell-state difference would be.
    """

    n_cells: int = 600
    min_gene_detection: float = 0.1
    min_prevalence: float = 0.85
    specific_genes: int = 8
    shared_genes: int = 4
    signal: float = 0.7
    program_pool: int = 500
    seed: int = 0


def make_exposure_data(data_dir: str | os.PathLike,
                       config: ExposureSimConfig = ExposureSimConfig()) -> ad.AnnData:
    """Cells x genes counts with `obsm['exposures']`, `obsm['catalogues']` (96 contexts),
    `uns['truth']` {signature: genes}, `uns['profiles']` (96 x signatures)."""
    data_dir = Path(data_dir)
    rng = np.random.default_rng(config.seed)
    symbols = read_gene_symbols(data_dir / SYMBOLS_FILE)
    cells = load_cellbench(data_dir / "cellbench", ALL_RUNS, symbols=symbols)
    if cells.n_obs < config.n_cells:
        raise ValueError(f"n_cells={config.n_cells} but CellBench has {cells.n_obs} singlets")
    cells = cells[np.sort(rng.choice(cells.n_obs, config.n_cells, replace=False))]
    detected = (cells.X > 0).mean(axis=0) >= config.min_gene_detection
    cells = cells[:, detected & ~cells.var["symbol"].duplicated(keep="first").to_numpy()].copy()
    cells.var_names = cells.var["symbol"].astype(str).to_numpy()

    tumours = pd.read_csv(data_dir / EXPOSURES_FILE, index_col=0)
    names = [s for s in tumours.columns if (tumours[s] > 0).mean() >= config.min_prevalence]
    n_program = config.shared_genes + config.specific_genes * len(names)
    counts = np.asarray(cells.X, dtype=np.float64)
    logged = log_cpm(counts)
    variable = np.argsort(-logged.var(axis=0))
    program = rng.choice(variable[: max(config.program_pool, n_program)], n_program,
                         replace=False)
    shared, specific = program[: config.shared_genes], program[config.shared_genes:]
    scaled = (logged - logged.mean(axis=0)) / logged.std(axis=0)

    exposures, truth = {}, {}
    for k, name in enumerate(names):
        genes = np.concatenate([shared, specific[k * config.specific_genes:
                                                 (k + 1) * config.specific_genes]])
        weights = rng.choice([-1.0, 1.0], len(genes)) * rng.uniform(0.5, 1.5, len(genes))
        score = scaled[:, genes] @ weights
        score = np.sqrt(config.signal) * score / score.std() + np.sqrt(
            1 - config.signal) * rng.normal(size=cells.n_obs)
        quantiles = stats.norm.cdf(score / score.std())
        exposures[name] = np.quantile(tumours[name].to_numpy(), quantiles)
        truth[name] = cells.var_names[genes].tolist()

    exposure_table = pd.DataFrame(exposures, index=cells.obs_names)
    profiles = load_signature_profiles(data_dir / COSMIC_FILE, names)
    catalogues = rng.poisson(exposure_table.to_numpy() @ profiles.to_numpy().T)
    cells.obsm["exposures"] = exposure_table
    cells.obsm["catalogues"] = pd.DataFrame(catalogues, index=cells.obs_names,
                                            columns=profiles.index)
    cells.uns["truth"] = truth
    cells.uns["profiles"] = profiles
    cells.uns["source"] = f"semi-synthetic from {data_dir} (seed {config.seed})"
    return cells


def make_toy_exposure_data(n_cells: int = 240, n_genes: int = 120, n_signatures: int = 3,
                           genes_per_signature: int = 4, seed: int = 0) -> ad.AnnData:
    """A fully synthetic, download-free stand-in: Poisson counts around log-normal cell
    states, each signature's exposure 50 * exp(0.3 * score) of a 4-gene log-CPM score plus
    noise. Same layout as `make_exposure_data` (without catalogues); for tests and demos."""
    if n_signatures * genes_per_signature > n_genes:
        raise ValueError(f"{n_signatures} x {genes_per_signature} program genes need at "
                         f"least that many genes; got n_genes={n_genes}")
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 5.0, size=n_genes)
    states = rng.normal(size=(n_cells, n_genes)) * 0.6
    counts = rng.poisson(means * np.exp(states)).astype(np.float32)
    logged = log_cpm(counts.astype(np.float64))
    scaled = (logged - logged.mean(axis=0)) / logged.std(axis=0)
    cells = [f"cell_{i}" for i in range(n_cells)]
    gene_names = np.array([f"gene_{g}" for g in range(n_genes)])
    exposures, truth = {}, {}
    for k in range(n_signatures):
        genes = np.arange(k * genes_per_signature, (k + 1) * genes_per_signature)
        score = scaled[:, genes].sum(axis=1) + 0.3 * rng.normal(size=n_cells)
        exposures[f"signature_{k}"] = 50.0 * np.exp(0.3 * score)
        truth[f"signature_{k}"] = gene_names[genes].tolist()
    adata = ad.AnnData(counts, obs=pd.DataFrame(index=cells),
                       var=pd.DataFrame(index=gene_names))
    adata.obsm["exposures"] = pd.DataFrame(exposures, index=cells)
    adata.uns["truth"] = truth
    adata.uns["source"] = f"toy exposures (seed {seed})"
    return adata
