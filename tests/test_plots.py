"""Every figure writes a readable PNG of the data it is given, atomically."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from perturbjax import plots

RNG = np.random.default_rng(0)


def _is_png(path) -> bool:
    image = mpimg.imread(path)
    return image.ndim == 3 and min(image.shape[:2]) > 50


def test_the_benchmark_figures_are_written(tmp_path):
    truth = RNG.normal(size=50)
    top = np.argsort(-np.abs(truth))[:10]
    plots.effect_scatter(truth, {"a": truth + 0.1, "b": 0 * truth}, top, tmp_path / "e.png")
    real = RNG.normal(size=(40, 50))
    plots.mean_scatter(real, {"a": real + 0.1}, top, tmp_path / "m.png")
    plots.embedding_scatter({"real": real[:, :2], "pred": real[:, :2] + 1}, tmp_path / "p.png")
    table = pd.DataFrame([[0.2, np.nan], [1.0, -0.5]], index=["m1", "m2"], columns=["A", "B"])
    plots.score_heatmaps({"r2": table, "pearson": table}, tmp_path / "h.png", title="t")
    metrics = pd.DataFrame({"model": ["a", "a", "b"], "x": [1.0, 2.0, 3.0], "y": [0.1, 0.2, 0.3]})
    plots.metric_bars(metrics, ["x", "y"], tmp_path / "b.png")
    names = ["e", "m", "p", "h", "b"]
    assert all(_is_png(tmp_path / f"{n}.png") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in names)


def test_the_study_figures_are_written(tmp_path):
    plots.line({1: 0.5, 2: 0.7}, "epochs", "r2", tmp_path / "l.png")
    plots.scatter(RNG.normal(size=20), RNG.normal(size=20), "x", "y", tmp_path / "s.png")
    plots.boxes({"drug": {"sensitive": RNG.normal(size=9), "resistant": RNG.normal(size=9)}},
                "score", tmp_path / "x.png")
    ranking = pd.DataFrame({"gene": ["g1", "g2"], "importance": [0.6, 0.4],
                            "in_programme": [True, False]})
    plots.importance_bars(ranking, tmp_path / "i.png")
    assert all(_is_png(tmp_path / f"{n}.png") for n in "lsxi")
