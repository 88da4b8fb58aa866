"""Split-conformal intervals with contexts as units: the finite-sample guarantee on exchangeable
contexts, its limits with few contexts, and its failure on a context unlike the others."""

from __future__ import annotations

import numpy as np
import pytest

from perturbjax.metrics.conformal import (
    calibration_rank,
    fewest_contexts,
    half_widths,
    interval_scores,
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
def test_new_exchangeable_contexts_are_covered_at_the_promised_rate(level):
    # K calibration contexts, then fresh contexts from the same law: the expected share of
    # genes covered is ceil(level (K+1)) / (K+1) exactly for continuous residuals.
    rng = np.random.default_rng(0)
    n_calibration, coverage = 9, []
    for _ in range(300):
        predicted, real = exchangeable_contexts(rng, n_calibration + 1, 200)
        residuals = np.stack([np.abs(real[c] - predicted[c]) for c in sorted(predicted)])
        half = half_widths(residuals[1:], level)
        coverage.append(interval_scores(real["c0"], predicted["c0"], half)["coverage"])
    expected = calibration_rank(n_calibration, level) / (n_calibration + 1)
    assert expected >= level
    assert np.mean(coverage) == pytest.approx(expected, abs=0.01)


def test_a_tables_mean_coverage_is_fixed_by_construction_even_on_unlike_contexts():
    # Calibrated on each other, N contexts cover each gene exactly ceil(level N) times: the
    # mean over a table's contexts is no evidence of calibration, whatever the residuals.
    rng = np.random.default_rng(1)
    predicted, real = exchangeable_contexts(rng, 10, 300)
    real["c0"] = real["c0"] + 5.0  # far from exchangeable
    table = leave_one_context_out(predicted, real, levels=(0.8,))
    assert table["coverage"].mean() == pytest.approx(calibration_rank(9, 0.8) / 10)


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
