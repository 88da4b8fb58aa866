"""The drug-response study's settings: features, the grid, folds, seeds and the transfer."""

from __future__ import annotations

import dataclasses

import numpy as np

from perturbjax.data.cellbench import FIVE_LINE_PLATES
from perturbjax.drug.features import ZSCORED_FILTER
from perturbjax.drug.grid import ORIGINAL_GRID, parameter_grid
from perturbjax.errors import RunValidationError, seed_problem

CELLBENCH_LINES = ("A549", "NCI-H838", "NCI-H1975", "NCI-H2228", "HCC827")
FEATURES = ("quantiles", "bins")
MEASURES = ("LN_IC50", "AUC")
GPDS_NAMES = ("pcc", "network")
REFERENCES = ("mean", "lineage mean")
GRIDS = {
    "original": ORIGINAL_GRID,
    "small": parameter_grid(hidden=((16, 8),), activation=("relu", "tanh"),
                            learning_rate=(3e-3,), batch_size=(16,), epochs=(10, 20)),
}


@dataclasses.dataclass(frozen=True)
class DrugStudyConfig:
    """Settings of the study; defaults are the original code's where it had one.

    The data: the embedded `toy` set, or GDSC2 bulk lines (the official release files
    `response` and `expression` when given, else the shared copy in `data_dir`, default
    $PERTURBJAX_DATA or ../shared/data) with CellBench's single cells (`cellbench_runs`) and
    DepMap lineages (`lineages`: a sample-info CSV; None: the shared copy when present;
    "none": no lineage reference). `drug` and `measure` pick the response. Empty
    `held_out_lines` and `gene_filter` mean the data's own: CellBench's five lines (the toy
    set's for the toy) and `ZSCORED_FILTER` (no filter for the toy); `gene_filter` None keeps
    every gene.
    """

    toy: bool = False
    data_dir: str | None = None
    response: str | None = None
    expression: str | None = None
    drug: str = "Camptothecin"
    measure: str = "LN_IC50"
    cellbench_runs: tuple[str, ...] = FIVE_LINE_PLATES
    lineages: str | None = None
    features: str = "quantiles"
    gene_filter: tuple[float, ...] | None = ()
    n_bins: int = 20
    grid: str = "original"
    folds: int = 5
    repeats: int = 2
    inner_validation: float = 0.2
    seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    held_out_lines: tuple[str, ...] = ()
    ridge_alphas: tuple[float, ...] = tuple(np.logspace(-1, 5, 25))
    ig_steps: int = 32
    set_size: int = 250
    permutations: int = 1000
    fdr: float = 0.1
    top_genes: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        problems = []
        if self.features not in FEATURES:
            problems.append(f"features: '{self.features}'; expected one of {list(FEATURES)}")
        if self.grid not in GRIDS:
            problems.append(f"grid: '{self.grid}'; expected one of {sorted(GRIDS)}")
        if self.folds < 2:
            problems.append(f"folds: {self.folds}; expected at least 2 outer folds")
        if self.repeats < 1 or self.permutations < 1:
            problems.append(f"repeats, permutations: {self.repeats}, {self.permutations}; "
                            "expected positive numbers")
        if not 0 < self.inner_validation < 1:
            problems.append(f"inner_validation: {self.inner_validation}; expected a fraction "
                            "in (0, 1)")
        problems += [p for p in (seed_problem(n, getattr(self, n))
                                 for n in ("seeds", "final_seeds")) if p]
        if self.measure not in MEASURES:
            problems.append(f"measure: '{self.measure}'; expected one of {list(MEASURES)}")
        if (self.response is None) != (self.expression is None):
            problems.append("response, expression: give both release files or neither")
        if self.gene_filter and len(self.gene_filter) != 2:
            problems.append(f"gene_filter: {self.gene_filter}; expected (min mean, min log "
                            "variance)")
        if problems:
            raise RunValidationError("DrugStudyConfig", problems)

    def resolved(self, held_out_lines: tuple[str, ...] = CELLBENCH_LINES,
                 gene_filter: tuple[float, ...] | None = ZSCORED_FILTER) -> DrugStudyConfig:
        """The configuration with the data's own held-out lines and gene filter filled in
        where it leaves them empty."""
        return dataclasses.replace(
            self, held_out_lines=self.held_out_lines or tuple(held_out_lines),
            gene_filter=gene_filter if self.gene_filter == () else self.gene_filter)
