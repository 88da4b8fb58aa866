"""Known answers of the response metrics, the replicate ceiling, calibration and the
context-aware references."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from perturbjax.data.schema import PerturbationSpec
from perturbjax.data.splits import hold_out
from perturbjax.metrics.calibration import (
    CALIBRATED,
    CEILING,
    add_discrimination,
    calibrate,
    floor_models,
    replicate_ceiling,
)
from perturbjax.metrics.response import (
    ResponseTruth,
    discrimination,
    mean_response,
    response_scores,
    robust_degs,
)
from perturbjax.models.references import (
    predict_linear,
    predict_mean_shift,
    predict_mean_shift_balanced,
)

GENES = np.array([f"g{i}" for i in range(150)])


def _cells(seed: int, n: int = 80, shift: float = 0.0) -> np.ndarray:
    """Log-normal-ish expression with a third of the values exactly zero, as in scRNA-seq."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 0.5, (n, len(GENES))) + shift * (np.arange(len(GENES)) < 30)
    return np.where(rng.random(values.shape) < 0.3, 0.0, values).astype(np.float32)


@pytest.fixture(scope="module")
def truth():
    control, real = _cells(0), _cells(1, shift=1.5)
    return control, real, ResponseTruth.build(control, real, GENES)


def test_control_plus_the_real_response_scores_one(truth):
    control, real, ref = truth
    pred = control + (real.mean(0) - control.mean(0))
    scores = response_scores(ref, pred)
    for name in ("pearson_delta", "pearson_delta_top20", "pearson_delta_top100",
                 "r2_delta_top100", "direction_top100"):
        assert scores[name] == pytest.approx(1.0, abs=1e-6), name
    assert scores["mse_top100"] == pytest.approx(0.0, abs=1e-10)


def test_control_reference_scores_pearson_delta_zero_by_definition(truth):
    control, _, ref = truth
    scores = response_scores(ref, control)
    assert scores["pearson_delta"] == 0.0 and scores["pearson_delta_top100"] == 0.0
    assert scores["direction_top100"] == 0.0  # a zero response has no sign
    assert scores["r2_delta_top100"] < 0.0


def test_scores_match_scipy_and_scikit_learn(truth):
    control, real, ref = truth
    pred = _cells(2, shift=0.7)
    scores = response_scores(ref, pred)
    d_p = pred.astype(np.float64).mean(0) - control.astype(np.float64).mean(0)
    d_r = real.astype(np.float64).mean(0) - control.astype(np.float64).mean(0)
    top = ref.top(100)
    assert scores["pearson_delta"] == pytest.approx(pearsonr(d_p, d_r)[0], rel=1e-9)
    assert scores["pearson_delta_top100"] == pytest.approx(pearsonr(d_p[top], d_r[top])[0],
                                                           rel=1e-9)
    assert scores["r2_delta_top100"] == pytest.approx(r2_score(d_r[top], d_p[top]), rel=1e-9)
    assert scores["mae_top100"] == pytest.approx(np.abs(d_p[top] - d_r[top]).mean(), rel=1e-9)


def _scanpy_top(control: np.ndarray, group: np.ndarray, n: int) -> set[str]:
    """The robust DEG list from a direct scanpy call: Wilcoxon of group vs control alone,
    genes expressed in >= 10% of either group, top n by |score|."""
    adata = ad.AnnData(np.vstack([control, group]),
                       obs=pd.DataFrame({"g": pd.Categorical(["c"] * len(control)
                                                             + ["p"] * len(group))},
                                        index=[str(i) for i in range(len(control) + len(group))]),
                       var=pd.DataFrame(index=GENES))
    sc.tl.rank_genes_groups(adata, "g", groups=["p"], reference="c", method="wilcoxon",
                            n_genes=len(GENES))
    frame = sc.get.rank_genes_groups_df(adata, "p").set_index("names").loc[GENES]
    expressed = np.maximum((control > 0).mean(0), (group > 0).mean(0)) >= 0.1
    frame = frame[expressed]
    return set(frame.index[np.argsort(-frame["scores"].abs().to_numpy(), kind="stable")[:n]])


def test_degs_robust_tests_the_prediction_apart_from_the_real_cells(truth):
    control, real, ref = truth
    pred = _cells(3, shift=1.0)
    expected = len(_scanpy_top(control, real, 100) & _scanpy_top(control, pred, 100)) / 100
    assert response_scores(ref, pred)["degs_robust"] == pytest.approx(expected)
    assert set(GENES[ref.top(100)]) == _scanpy_top(control, real, 100)


def test_genes_expressed_in_under_ten_percent_of_both_groups_are_no_degs():
    control, real = _cells(4), _cells(5, shift=1.5)
    control[:, 0], real[:, 0] = 0.0, 0.0
    real[:5, 0] = 50.0  # a huge change, in 5 of 80 cells only
    assert 0 not in robust_degs(control, real, GENES, n=len(GENES))
    real[:10, 0] = 50.0  # now in 12.5% of the perturbed cells
    assert 0 in robust_degs(control, real, GENES, n=len(GENES))


def test_own_responses_discriminate_perfectly_and_a_blind_one_scores_about_half():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(20, 150))
    assert np.all(discrimination(real + 0.01 * rng.normal(size=real.shape), real) == 1.0)
    blind = np.repeat(real.mean(0, keepdims=True), 20, axis=0)
    # Its ranks are a permutation of 0..K-1 over the contexts: mean 1 - (K-1)/(2K).
    assert discrimination(blind, real).mean() == pytest.approx(0.5 + 1 / 40)


def _pearson_ceiling(n_real: int, seed: int) -> float:
    control, real = _cells(seed, n=200), _cells(seed + 1, n=n_real, shift=0.5)

    def score(control, truth, scored):
        return {"pearson_delta": response_scores(ResponseTruth.build(control, truth, GENES),
                                                 scored)["pearson_delta"]}

    return replicate_ceiling(score, control, real, repeats=4, seed=0).scores["pearson_delta"]


def test_half_split_ceiling_is_below_one_and_rises_with_the_cell_count():
    small, large = _pearson_ceiling(20, 7), _pearson_ceiling(400, 7)
    assert small < large < 1.0


FLOORS = {m: m for m in ("control", "mean_shift", "mean_shift_balanced")}


def _frame(rows, metric="pearson_delta"):
    return pd.DataFrame(rows, columns=["model", "context", "condition", "seed", metric,
                                       metric + CEILING])


def test_calibration_is_zero_at_the_best_trivial_reference_and_one_at_the_ceiling():
    metrics = _frame([
        ("control", "a", "s", None, 0.0, 0.9), ("mean_shift", "a", "s", None, 0.5, 0.9),
        ("mean_shift_balanced", "a", "s", None, 0.3, 0.9), ("model", "a", "s", 1, 0.7, 0.9),
        ("model", "a", "s", 2, 0.9, 0.9), ("model", "a", "s", 3, 0.1, 0.9),
    ])
    calibrated = calibrate(metrics, ["pearson_delta"], FLOORS)["pearson_delta" + CALIBRATED]
    np.testing.assert_allclose(calibrated, [-1.25, 0.0, -0.5, 0.5, 1.0, -1.0])
    assert floor_models(metrics, "pearson_delta", FLOORS).tolist() == ["mean_shift"]


def test_calibration_of_an_error_runs_the_other_way_and_is_blank_without_headroom():
    errors = _frame([("control", "a", "s", None, 4.0, 1.0),
                     ("mean_shift", "a", "s", None, 3.0, 1.0),
                     ("mean_shift_balanced", "a", "s", None, 5.0, 1.0),
                     ("model", "a", "s", 1, 2.0, 1.0)], metric="mse_top100")
    assert calibrate(errors, ["mse_top100"], FLOORS)["mse_top100" + CALIBRATED].iloc[-1] == 0.5
    errors["mse_top100" + CEILING] = 3.5  # the ceiling is worse than the floor
    assert calibrate(errors, ["mse_top100"], FLOORS)["mse_top100" + CALIBRATED].isna().all()


def test_discrimination_is_added_per_model_and_seed_across_contexts():
    rng = np.random.default_rng(8)
    real = {(c, "s"): rng.normal(size=30) for c in "abc"}
    rows, predicted = [], {}
    for model, noise in (("good", 0.01), ("blind", None)):
        for context in "abc":
            predicted[len(rows)] = (real[(context, "s")] + noise * rng.normal(size=30)
                                    if noise else np.zeros(30))
            rows.append({"model": model, "context": context, "condition": "s", "seed": 1})

    class Halves:  # a ceiling whose halves are the real responses themselves
        def __init__(self, response):
            self.predicted = self.real = response[None, :]

    table = add_discrimination(pd.DataFrame(rows), predicted, real,
                               {k: Halves(v) for k, v in real.items()})
    assert table.loc[table.model == "good", "discrimination"].tolist() == [1.0, 1.0, 1.0]
    assert table["discrimination" + CEILING].tolist() == [1.0] * 6
    assert table.loc[table.model == "blind", "discrimination"].mean() == pytest.approx(2 / 3)


SPEC = PerturbationSpec("cell_type", "condition", "control")


def _contexts(shifts: dict[str, np.ndarray], control_means: dict[str, np.ndarray],
              sizes: dict[str, tuple[int, int]]) -> ad.AnnData:
    """Cells of several contexts around given control means and shifts (noise sd 0.1)."""
    rng = np.random.default_rng(9)
    blocks, obs = [], []
    for context, (n_control, n_perturbed) in sizes.items():
        for condition, n, mean in (("control", n_control, control_means[context]),
                                   ("stimulated", n_perturbed,
                                    control_means[context] + shifts[context])):
            blocks.append(mean + 0.1 * rng.normal(size=(n, len(mean))))
            obs += [(context, condition)] * n
    return ad.AnnData(np.vstack(blocks).astype(np.float32),
                      obs=pd.DataFrame(obs, columns=["cell_type", "condition"],
                                       index=[str(i) for i in range(len(obs))]))


def test_balanced_mean_shift_is_free_of_cell_type_composition():
    means = {c: np.full(20, level) for c, level in (("a", 1.0), ("b", 5.0), ("t", 3.0))}
    shifts = {"a": np.full(20, 1.0), "b": np.full(20, 3.0), "t": np.zeros(20)}
    # Context b is mostly control cells, a mostly perturbed: the pooled shift mixes levels.
    adata = _contexts(shifts, means, {"a": (20, 180), "b": (180, 20), "t": (50, 50)})
    split = hold_out(adata, SPEC, "t")
    control_mean = split.control.X.mean(0)
    balanced = predict_mean_shift_balanced(split, SPEC, "stimulated").mean(0) - control_mean
    pooled = predict_mean_shift(split, SPEC, "stimulated").mean(0) - control_mean
    obs = split.train.obs
    own = [split.train.X[((obs.cell_type == c) & (obs.condition == "stimulated")).to_numpy()]
           .mean(0) - split.train.X[((obs.cell_type == c) & (obs.condition == "control"))
                                    .to_numpy()].mean(0) for c in "ab"]
    np.testing.assert_allclose(balanced, np.mean(own, axis=0), atol=1e-5)
    np.testing.assert_allclose(balanced, 2.0, atol=0.1)  # (1 + 3) / 2
    assert np.all(pooled < 0.0)  # composition: the pooled perturbed cells are mostly of a


def test_linear_reference_recovers_a_response_linear_in_the_control_centroid():
    rng = np.random.default_rng(10)
    direction = rng.normal(size=20)
    levels = {c: float(v) for c, v in zip("abcdefg", np.linspace(-2, 2, 7), strict=True)}
    means = {c: v * direction for c, v in levels.items()}
    shifts = {c: 0.5 * v * np.ones(20) for c, v in levels.items()}  # linear in the level
    adata = _contexts(shifts, means, {c: (60, 60) for c in levels})
    split = hold_out(adata, SPEC, "g")  # an extrapolation: the largest level
    control_mean = split.control.X.mean(0)
    linear = predict_linear(split, SPEC, "stimulated").mean(0) - control_mean
    balanced = predict_mean_shift_balanced(split, SPEC, "stimulated").mean(0) - control_mean
    truth = mean_response(split.truth.X, control_mean.astype(np.float64))
    assert np.abs(linear - truth).mean() < 0.2 * np.abs(balanced - truth).mean()


def test_the_floor_is_read_from_the_rows_the_study_names_as_each_reference():
    metrics = _frame([("control@nearest", "a", "s", None, 0.0, 0.9),
                      ("mean_shift@nearest", "a", "s", None, 0.5, 0.9),
                      ("mean_shift_balanced@nearest", "a", "s", None, 0.3, 0.9),
                      ("model", "a", "s", 1, 0.7, 0.9)])
    floors = {f"{m}@nearest": m for m in FLOORS}
    calibrated = calibrate(metrics, ["pearson_delta"], floors)["pearson_delta" + CALIBRATED]
    np.testing.assert_allclose(calibrated.iloc[-1], 0.5)
    assert floor_models(metrics, "pearson_delta", floors).tolist() == ["mean_shift"]
    with pytest.raises(ValueError, match="floor references"):
        calibrate(metrics, ["pearson_delta"], FLOORS)  # none of these rows is named so
