"""The Kang table that README and the results page quote is the one its committed
`metrics.csv` gives (`headline_table`), and the committed summary was generated from it:
no number of the headline is copied by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from perturbjax.studies.ood.report import headline_table

ROOT = Path(__file__).resolve().parents[2]
KANG = ROOT / "results" / "kang_valid"
HEADER = "| model | configuration | contexts |"


def _kang_headline() -> str:
    metrics = pd.read_csv(KANG / "metrics.csv", float_precision="round_trip")
    return headline_table(metrics[~metrics["held_out_condition"].astype(bool)])


def _quoted_table(document: Path) -> str:
    """The first markdown table of `document` whose header starts with `HEADER`."""
    lines = document.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(HEADER)), None)
    assert start is not None, f"{document} quotes no table starting {HEADER!r}"
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")),
               len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("document", ["README.md", "docs/results/ood_benchmark.md"])
def test_the_kang_headline_quoted_is_the_one_the_committed_metrics_give(document):
    assert _quoted_table(ROOT / document) == _kang_headline()


def test_the_committed_kang_summary_was_generated_from_the_committed_metrics():
    assert _kang_headline() in (KANG / "summary.md").read_text()
