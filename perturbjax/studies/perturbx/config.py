"""The PerturbX study's settings, checked as they are made."""

from __future__ import annotations

import dataclasses

from perturbjax.data.synthetic_mixseq import MixSeqSimConfig
from perturbjax.errors import RunValidationError, seed_problem
from perturbjax.models import perturbx

DEFAULT_FOLDS = 6


@dataclasses.dataclass(frozen=True)
class PerturbXStudyConfig:
    """Everything the study needs, its data source first.

    Attributes:
      toy: the download-free toy set (a known programme) instead of other data.
      mixseq_dir, experiments, status_csv: real MIX-seq data: the experiment folders (the
        DMSO control and one drug) and each line's TP53 status (a CSV with columns
        cell_line, tp53_wt; default: from the GDSC mutations in `data_dir`).
      data_dir: the shared data folder with gdsc/ (default: $PERTURBJAX_DATA or
        ../shared/data); without `mixseq_dir` the semi-synthetic set is built around its
        real lines (`simulation`, seeded by `fold_seed`).
      hvgs: keep this many highly variable genes (scanpy); None keeps every gene.
      model: the PerturbX architecture and objective.
      n_folds, fold_seed: stratified folds over cell lines; `None`: `DEFAULT_FOLDS`, or as
        many as the smaller status class has lines when it has fewer.
      seeds: initialisation / bootstrap seeds; every fold x seed is one member.
      epochs, batch_size, learning_rate: Adam on bags (batch_size bags per step).
      selector_speed: the selector's logits take steps this many times larger (they must
        move by ~log(genes) + 6 for the reference's convergence check, which at the base
        rate takes far more steps than the decoder needs).
      standardise_inputs: the model reads each gene standardised over all control cells
        (unperturbed inputs, also available for the lines it predicts; no target is used),
        so the selector is not drawn to genes merely for their dynamic range.
      gene_weights: 'response' (each fold's mean |effect| per gene over its training lines,
        scaled to mean 1: the paper's weighting) or 'uniform'.
      status_key: obs column, constant within a line, that stratifies the folds.
      n_top_degs: genes scored by R^2 and MSE (by mean |effect| over all lines).
      k_neighbours: lines averaged by the nearest-lines reference.
      shapley_permutations, shapley_cells, shapley_tolerance: the gene ranking's sampling.
      n_top_genes: genes reported (and scored against a known programme).
    """

    toy: bool = False
    mixseq_dir: str | None = None
    experiments: tuple[str, ...] = ("DMSO_24hr_expt1", "Idasanutlin_24hr_expt1")
    status_csv: str | None = None
    data_dir: str | None = None
    simulation: MixSeqSimConfig = MixSeqSimConfig()
    hvgs: int | None = None
    model: perturbx.PerturbXConfig = perturbx.PerturbXConfig()
    n_folds: int | None = None
    fold_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 300
    batch_size: int = 4
    learning_rate: float = 1e-3
    selector_speed: float = 50.0
    standardise_inputs: bool = True
    gene_weights: str = "response"
    status_key: str = "tp53_wt"
    n_top_degs: int = 100
    k_neighbours: int = 3
    shapley_permutations: int = 128
    shapley_cells: int = 32
    shapley_tolerance: float = 0.05
    n_top_genes: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.gene_weights not in ("response", "uniform"):
            problems.append(f"gene_weights: '{self.gene_weights}'; expected 'response' or "
                            "'uniform'")
        if self.n_folds is not None and self.n_folds < 2:
            problems.append(f"n_folds: {self.n_folds}; expected at least 2 folds")
        problems += [p for p in [seed_problem("seeds", self.seeds)] if p]
        for name in ("epochs", "batch_size", "shapley_permutations", "n_top_degs"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)}; expected a positive number")
        if problems:
            raise RunValidationError("PerturbXStudyConfig", problems)
