"""A McFarland-like MIX-seq data set with a known answer, built around real cell lines.

MIX-seq itself cannot be fetched here, so each cell line's single cells are drawn around its
real bulk profile (GDSC, `../shared/data/gdsc`), with its real TP53 status. Idasanutlin
frees p53, so the simulated response is a p53 target programme (real target genes; up, plus
a repressed cell-cycle arm) that is strong in TP53 wild-type lines and weak in mutant lines,
plus line-specific variation. Wild-type lines also carry a tonic basal activity of the
programme (`basal_shift`) on top of the real profiles' own p53 signal (real basal
p53-target expression separates wild-type from mutant GDSC lines with an AUC of about 0.7),
so responsiveness can be read from the unperturbed state, as in the paper.

Counts: log-mean = gene baseline + `profile_scale` x (the line's real z-score, centred over
the chosen lines) [+ basal shift] [+ response]; per-cell library sizes are log-normal and
counts negative binomial. The result has MIX-seq's schema (`MIXSEQ_SPEC`): raw counts, obs
`cell_line`, `condition` (DMSO / Idasanutlin), `tp53_wt`; the truth is in `uns['truth']`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbjax.data.gdsc import (
    EXPRESSION_FILE,
    MUTATIONS_FILE,
    SAMPLE_INFO_FILE,
    line_key,
    read_expression_npz,
    read_lineages,
    read_mutation_status,
)
from perturbjax.data.mixseq import MIXSEQ_SPEC

DRUG = "Idasanutlin"
# Established direct p53 targets, including the six the paper's gene ranking names.
P53_TARGETS = (
    "CDKN1A", "MDM2", "RPS27L", "SESN1", "TP53I3", "FAS", "GDF15", "TNFRSF10B", "BBC3",
    "PHLDA3", "ZMAT3", "SERPINE1", "CCL2", "IGFBP7", "FDXR", "DDB2", "RRM2B", "AEN", "EDA2R",
    "TP53INP1", "CCNG1", "BTG2", "C1QL1", "SESN2", "TRIAP1", "SPATA18", "TIGAR", "XPC",
)
# Cell-cycle genes p53 represses indirectly (p21-DREAM); a smaller, negative arm.
P53_REPRESSED = (
    "CCNB1", "CDC20", "PLK1", "BUB1", "CCNA2", "CDK1", "TOP2A", "AURKA", "KIF20A", "CENPF",
    "E2F1", "MKI67", "CDC25C", "BIRC5",
)


@dataclasses.dataclass(frozen=True)
class MixSeqSimConfig:
    """Sizes and effect strengths of the simulation (log-expression units).

    Attributes:
      n_lines, n_wild_type: cell lines, and how many are TP53 wild-type (McFarland: 24, 7).
      n_genes: genes simulated: the programme genes present, then the most variable others.
      cells_per_condition: mean cells per line and condition (each line draws 0.6-1.4x).
      profile_scale: log-expression per unit of the real profile's z-score.
      response: mean log fold change of the programme's targets in wild-type lines.
      repressed_response: the same for the repressed arm (applied with a minus sign).
      mutant_fraction: a mutant line's response relative to a wild-type one (at most).
      basal_shift: tonic programme activity in unstimulated wild-type lines: 0.5 is about
        1.65x the targets' basal expression (TP53 wild-type lines express targets such as
        MDM2 and CDKN1A higher at rest). The study's gene ranking depends on it: at 0.3 its
        top 10 held 4 programme genes, at 0.5 all 10 (docs/perturbx.md).
      line_specific_genes, line_specific_sd: each line's own response on random genes.
      library_size: median UMIs per cell; dispersion: negative-binomial shape.
      exclude_lineages: DepMap lineages never drawn. MIX-seq pools solid-tumour lines (all 24
        of McFarland's idasanutlin lines are), so blood, lymphoid and plasma-cell lines,
        whose profiles lie far from every other line, are left out by default.
    """

    n_lines: int = 24
    n_wild_type: int = 7
    n_genes: int = 2000
    cells_per_condition: int = 200
    profile_scale: float = 0.5
    response: float = 1.2
    repressed_response: float = 0.5
    mutant_fraction: float = 0.15
    basal_shift: float = 0.5
    line_specific_genes: int = 50
    line_specific_sd: float = 0.3
    library_size: float = 4000.0
    dispersion: float = 10.0
    exclude_lineages: tuple[str, ...] = ("blood", "lymphocyte", "plasma_cell")
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.n_wild_type < self.n_lines:
            raise ValueError(f"n_wild_type ({self.n_wild_type}) must lie in 1..n_lines - 1 "
                             f"({self.n_lines - 1}): folds are stratified by TP53 status")
        if self.cells_per_condition < 2 or self.n_genes < 2:
            raise ValueError("cells_per_condition and n_genes must be at least 2")


def simulate_mixseq(profiles: pd.DataFrame, wild_type: pd.Series, up: list[str],
                    down: list[str], config: MixSeqSimConfig) -> ad.AnnData:
    """Single cells of every line in `profiles` (lines x genes, z-scores) under DMSO and the
    drug; `up` / `down` are the programme genes (columns of `profiles`)."""
    rng = np.random.default_rng(config.seed)
    lines, genes = profiles.index.to_numpy(), profiles.columns.to_numpy()
    wt = wild_type.reindex(lines).to_numpy(bool)
    n_lines, n_genes = profiles.shape
    is_up, is_down = np.isin(genes, up), np.isin(genes, down)
    baseline = rng.normal(0.0, 1.2, n_genes)
    baseline[is_up | is_down] = rng.normal(1.0, 0.5, int((is_up | is_down).sum()))
    z = profiles.to_numpy(np.float64)
    basal = baseline + config.profile_scale * (z - z.mean(axis=0))
    basal[np.ix_(wt, is_up)] += config.basal_shift

    strength = np.where(wt, rng.uniform(0.6, 1.4, n_lines),
                        rng.uniform(0.0, config.mutant_fraction, n_lines))
    effect = np.zeros(n_genes)
    effect[is_up] = config.response * rng.uniform(0.5, 1.5, int(is_up.sum()))
    effect[is_down] = -config.repressed_response * rng.uniform(0.5, 1.5, int(is_down.sum()))
    log_fold = strength[:, None] * effect[None, :]
    others = np.flatnonzero(~(is_up | is_down))
    for line in range(n_lines):
        chosen = rng.choice(others, size=min(config.line_specific_genes, len(others)),
                            replace=False)
        log_fold[line, chosen] += rng.normal(0.0, config.line_specific_sd, len(chosen))

    blocks, obs = [], []
    for line in range(n_lines):
        for condition, shift in (("DMSO", 0.0), (DRUG, log_fold[line])):
            n = max(2, int(round(config.cells_per_condition * rng.uniform(0.6, 1.4))))
            blocks.append(_counts(basal[line] + shift, n, config, rng))
            obs.append(pd.DataFrame({"cell_line": lines[line], "condition": condition,
                                     "tp53_wt": wt[line]}, index=range(n)))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    for key in ("cell_line", "condition"):
        obs[key] = obs[key].astype("category")
    var = pd.DataFrame({"p53_target": is_up, "p53_repressed": is_down}, index=genes)
    adata = ad.AnnData(np.concatenate(blocks).astype(np.float32), obs=obs, var=var)
    adata.uns["truth"] = {
        "programme": [*genes[is_up], *genes[is_down]], "strength": strength,
        "lines": lines, "tp53_wt": wt, "log_fold": log_fold.astype(np.float32),
    }
    adata.uns["spec"] = dataclasses.asdict(MIXSEQ_SPEC)
    return adata


def _counts(log_mean: np.ndarray, n_cells: int, config: MixSeqSimConfig,
            rng: np.random.Generator) -> np.ndarray:
    """Negative-binomial UMI counts of `n_cells` cells around one expression state."""
    proportions = np.exp(log_mean - log_mean.max())
    proportions /= proportions.sum()
    library = config.library_size * rng.lognormal(0.0, 0.35, n_cells)
    mean = library[:, None] * proportions[None, :]
    rate = rng.gamma(config.dispersion, mean / config.dispersion)
    return rng.poisson(rate).astype(np.float32)


def choose_genes(expression: pd.DataFrame, programme: list[str], n_genes: int) -> list[str]:
    """The programme genes, then the genes most variable across the lines, `n_genes` in all."""
    rest = expression.drop(columns=programme).var(axis=0).sort_values(ascending=False)
    return [*programme, *rest.index[: max(n_genes - len(programme), 0)]]


def make_mixseq_like(data_dir: str | os.PathLike,
                     config: MixSeqSimConfig = MixSeqSimConfig()) -> ad.AnnData:
    """The McFarland-like data set around `config.n_lines` real GDSC lines (chosen at random
    outside `exclude_lineages`, `n_wild_type` of them TP53 wild-type), their real profiles."""
    data_dir = Path(data_dir)
    expression = read_expression_npz(data_dir / EXPRESSION_FILE)
    mutated = read_mutation_status(data_dir / MUTATIONS_FILE, "TP53")
    status = {line_key(name): bool(flag) for name, flag in mutated.items()}
    lineage = read_lineages(data_dir / SAMPLE_INFO_FILE) if config.exclude_lineages else {}
    known = [name for name in expression.index if line_key(name) in status
             and lineage.get(line_key(name)) not in config.exclude_lineages]
    is_wt = np.array([not status[line_key(name)] for name in known])
    rng = np.random.default_rng(config.seed)
    n_mutant = config.n_lines - config.n_wild_type
    if is_wt.sum() < config.n_wild_type or (~is_wt).sum() < n_mutant:
        raise ValueError(f"{data_dir}: {is_wt.sum()} wild-type / {(~is_wt).sum()} mutant lines "
                         f"available, asked for {config.n_wild_type} / {n_mutant}")
    chosen = np.concatenate([rng.choice(np.flatnonzero(is_wt), config.n_wild_type, False),
                             rng.choice(np.flatnonzero(~is_wt), n_mutant, False)])
    chosen = np.sort(chosen)
    lines = [known[i] for i in chosen]
    up = [g for g in P53_TARGETS if g in expression.columns]
    down = [g for g in P53_REPRESSED if g in expression.columns]
    genes = choose_genes(expression.loc[lines], up + down, config.n_genes)
    wild_type = pd.Series(is_wt[chosen], index=lines)
    return simulate_mixseq(expression.loc[lines, genes], wild_type, up, down, config)


def make_toy_mixseq(n_lines: int = 8, n_wild_type: int = 3, n_genes: int = 120,
                    cells_per_condition: int = 40, seed: int = 0) -> ad.AnnData:
    """A small stand-alone version (random profiles, no download) for tests and demos."""
    rng = np.random.default_rng(seed)
    up, down = list(P53_TARGETS[:12]), list(P53_REPRESSED[:6])
    genes = [*up, *down, *(f"GENE{i:04d}" for i in range(n_genes - len(up) - len(down)))]
    lines = [f"LINE{i:02d}" for i in range(n_lines)]
    profiles = pd.DataFrame(rng.normal(size=(n_lines, n_genes)), index=lines, columns=genes)
    wild_type = pd.Series(np.isin(np.arange(n_lines), rng.permutation(n_lines)[:n_wild_type]),
                          index=lines)
    config = MixSeqSimConfig(n_lines=n_lines, n_wild_type=n_wild_type, n_genes=n_genes,
                             cells_per_condition=cells_per_condition, basal_shift=0.6,
                             library_size=2000.0, seed=seed)
    return simulate_mixseq(profiles, wild_type, up, down, config)
