"""The penalty ranking scales each metric between its best and worst model."""

import pandas as pd
import pytest

from perturbjax.metrics import penalty_ranking


def test_penalty_ranking_scales_each_metric_between_best_and_worst():
    rows = pd.DataFrame({
        "model": ["a", "a", "b", "b", "c", "c"],
        "r2_all": [0.9, 0.9, 0.5, 0.5, 0.7, 0.7],
        "edistance": [1.0, 1.0, 3.0, 3.0, 5.0, 5.0],
    })
    table = penalty_ranking(rows, ["r2_all", "edistance"])
    assert table.loc["a", "penalty"] == 0.0
    assert table.loc["b", "penalty"] == pytest.approx(1.0 + 0.5)
    assert table.loc["c", "penalty"] == pytest.approx(0.5 + 1.0)
    assert table.index[0] == "a" and table.loc["a", "rank"] == 1
