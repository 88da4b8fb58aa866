"""The real cells as their own prediction reach every metric's best value."""

import numpy as np
import pytest


def test_the_real_cells_as_their_own_prediction_score_perfectly():
    from perturbjax.metrics import HeldOutReference, evaluate_prediction

    rng = np.random.default_rng(3)
    control = rng.gamma(2.0, 0.5, (80, 150)).astype(np.float32)
    real = (rng.gamma(2.0, 0.5, (90, 150)) + (np.arange(150) < 30) * 1.0).astype(np.float32)
    reference = HeldOutReference.build(control, real, [f"g{i}" for i in range(150)])
    scores = evaluate_prediction(reference, real.copy(), n_top_degs=100)
    assert scores["degs"] == 100 and scores["degs_abs"] == 100
    for key in ("r2_all", "r2_top20", "r2_top100"):
        assert scores[key] == pytest.approx(1.0)
    assert scores["euclidean"] == pytest.approx(0.0, abs=1e-4)
    assert scores["edistance"] < 0.05 * evaluate_prediction(reference, control)["edistance"]
