"""Split-conformal intervals with contexts as units: the finite-sample guarantee on exchangeable
contexts, its limits with few contexts, and its failure on a context unlike the others."""

from __future__ import annotations

import numpy as np
import pytest

from perturbjax.metrics.conformal import (
    calibration_rank,
    fewest_contexts,
    half_widths,
    leave_one_context_out,
)


def exchangeable_contexts(rng: np.random.Generator, n_contexts: int, n_genes: int
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Predicted and real responses whose errors are iid across contexts (heavy-tailed, with
    gene-specific scales): exchangeable contexts."""
    scale = rng.gamma(2.0, 0.5, n_genes)
    predicted = {f"c{i}": rng.normal(0, 1, n_genes) for i in range(n_contexts)}
    real = {c: p + scale * rng.standard_t(3, n_genes) for c, p in predicted.items()}
    return predicted, real


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_on_exchangeable_contexts_is_the_rank_over_the_context_count(level):
    # With N contexts each calibrated by the other N - 1, the expected share of genes covered
    # is ceil(level N) / N exactly (continuous residuals): 0.8 and 0.9 at N = 10.
    rng = np.random.default_rng(0)
    n_contexts = 10
    coverage = [leave_one_context_out(*exchangeable_contexts(rng, n_contexts, 500),
                                      levels=(level,))["coverage"].mean()
                for _ in range(40)]
    expected = calibration_rank(n_contexts - 1, level) / n_contexts
    assert expected == pytest.approx(level)
    assert np.mean(coverage) == pytest.approx(expected, abs=0.01)


def test_too_few_contexts_give_an_infinite_interval_not_a_false_guarantee():
    assert (fewest_contexts(0.8), fewest_contexts(0.9)) == (4, 9)
    for level in (0.8, 0.9):
        n = fewest_contexts(level)
        assert calibration_rank(n - 1, level) > n - 1 >= 0
        assert calibration_rank(n, level) <= n
    residuals = np.random.default_rng(1).random((8, 5))
    assert np.isinf(half_widths(residuals, 0.9)).all()
    np.testing.assert_array_equal(half_widths(residuals, 0.8),
                                  np.sort(residuals, axis=0)[calibration_rank(8, 0.8) - 1])


def test_a_gene_missing_from_a_context_is_calibrated_on_the_others():
    residuals = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 6.0], [4.0, 7.0], [9.0, 8.0]])
    # gene 0: 5 residuals, rank ceil(0.8 * 6) = 5 -> 9; gene 1: 4 residuals, rank 4 -> 8
    np.testing.assert_array_equal(half_widths(residuals, 0.8), [9.0, 8.0])
    assert np.isinf(half_widths(residuals[:, [1]], 0.9)).all()


def test_a_context_unlike_the_others_is_covered_far_less():
    rng = np.random.default_rng(2)
    predicted, real = exchangeable_contexts(rng, 10, 500)
    real["c0"] = real["c0"] + 3.0  # a shifted response the others never showed
    table = leave_one_context_out(predicted, real, levels=(0.9,)).set_index("context")
    assert table.loc["c0", "coverage"] < 0.5 < table.drop("c0")["coverage"].min()


def test_the_seed_spread_is_reported_beside_and_not_as_the_interval():
    rng = np.random.default_rng(3)
    predicted, real = exchangeable_contexts(rng, 10, 200)
    members = {c: p + rng.normal(0, 0.01, (3, p.size)) for c, p in predicted.items()}
    table = leave_one_context_out(predicted, real, members, levels=(0.9,))
    # seeds that agree with each other say nothing about the error they share
    assert table["seed_spread_coverage"].max() < 0.2 < table["coverage"].min()
