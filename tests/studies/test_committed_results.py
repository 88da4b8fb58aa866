"""Committed results match the code: the Kang table that README and the results page quote
is the one its committed `metrics.csv` gives (`headline_table`), the committed summary was
generated from it (no number of the headline is copied by hand), and every committed row of
a learned model ran a configuration the code still runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from perturbjax.models import RECOMMENDED, FitSettings, get_model, model_names, registry
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


def stale_models(folder: Path) -> list[str]:
    """The learned models of a committed run whose recorded schedule no named configuration
    of today's code resolves to (a changed default, for instance, makes its rows stale), or
    that a run of an older format did not record."""
    config = json.loads((folder / "config.json").read_text())
    settings = FitSettings(configuration=config["configuration"], epochs=config["epochs"],
                           checkpoint_every=config["checkpoint_every"],
                           conditioning=config["conditioning"],
                           doses=config["design"] == "multidose")
    run = json.loads((folder / "run.json").read_text())
    if "cells" not in run:
        return [model for model in config["models"] if model in model_names("learned")]
    return [model for model, cell in run["cells"].items()
            if model in model_names("learned") and cell["schedule"] is not None
            # at the run's own epochs setting, not at the recorded budget: a changed default
            # budget is a change
            and get_model(model).named_configuration(cell["schedule"], settings,
                                                     (settings.epochs,)) == "unnamed"]


COMMITTED_RUNS = sorted(path.parent for path in (ROOT / "results").rglob("run.json")
                        if (path.parent / "config.json").is_file())


@pytest.mark.parametrize("folder", COMMITTED_RUNS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_row_ran_a_configuration_the_code_still_runs(folder):
    assert stale_models(folder) == [], (
        f"{folder}: rerun these models, whose recorded schedule is no longer a named "
        "configuration of the code")


def test_a_changed_default_makes_the_committed_rows_stale(monkeypatch):
    family = get_model(RECOMMENDED)
    model_config, train_config = family.configs["default"]
    changed = dataclasses.replace(family, configs={
        **family.configs, "default": (model_config, dataclasses.replace(
            train_config, epochs=train_config.epochs + 1))})
    folder = ROOT / "results" / "evaluation" / "synthetic_default"
    assert stale_models(folder) == []
    monkeypatch.setitem(registry._REGISTRY, RECOMMENDED, changed)
    assert stale_models(folder) == [RECOMMENDED]
