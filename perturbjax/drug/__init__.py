"""Drug sensitivity from expression: features shared by bulk lines and single cells, gene
signatures of sensitivity (GPDS) and their single-cell enrichment scores."""

from perturbjax.drug.features import (
    ORIGINAL_FILTER,
    ZSCORED_FILTER,
    QuantileBins,
    expression_filter,
    pseudo_bulk,
    sum_counts_by_symbol,
    within_sample_quantiles,
)
from perturbjax.drug.gpds import (
    enrichment_pvalues,
    enrichment_scores,
    gficf,
    integrated_gradients,
    network_gpds,
    null_enrichment_scores,
    pearson_gpds,
    score_cells,
    top_gene_sets,
)

__all__ = [
    "ORIGINAL_FILTER",
    "ZSCORED_FILTER",
    "QuantileBins",
    "enrichment_pvalues",
    "enrichment_scores",
    "expression_filter",
    "gficf",
    "integrated_gradients",
    "network_gpds",
    "null_enrichment_scores",
    "pearson_gpds",
    "pseudo_bulk",
    "score_cells",
    "sum_counts_by_symbol",
    "top_gene_sets",
    "within_sample_quantiles",
]
