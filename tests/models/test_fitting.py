import dataclasses

import numpy as np
import pytest

from perturbjax.data import SYNTHETIC_SPEC, hold_out
from perturbjax.models import mtae
from perturbjax.models.fitting import ConditionEncoding, Task, fit_on_anndata, predict_anndata
from perturbjax.train import TrainConfig

CONFIG = TrainConfig(epochs=2, batch_size=16, learning_rates=(1e-3,), patience=None)


def test_condition_codes_follow_the_sorted_labels(tiny_adata):
    encoding = ConditionEncoding.from_adata(tiny_adata, SYNTHETIC_SPEC)
    assert encoding.labels == ("control", "stimulated")
    codes = encoding.codes(tiny_adata, SYNTHETIC_SPEC)
    stimulated = (tiny_adata.obs["condition"] == "stimulated").to_numpy()
    np.testing.assert_array_equal(codes, stimulated.astype(np.int32))
    with pytest.raises(KeyError, match="condition 'LPS6' is not among"):
        encoding.code("LPS6")


def test_predictions_come_back_as_anndata_with_the_input_obs(tiny_adata):
    split = hold_out(tiny_adata, SYNTHETIC_SPEC, "type_2")
    encoding = ConditionEncoding.from_adata(tiny_adata, SYNTHETIC_SPEC)
    model = dataclasses.replace(mtae.DEFAULT[0], hidden=(8,), latent=4)
    objective = mtae.build(model, Task.of(tiny_adata.n_vars, encoding.labels, encoding.control))
    result = fit_on_anndata(objective, CONFIG, split.train, SYNTHETIC_SPEC, encoding, [1, 5])
    preds = predict_anndata(objective, result, split.control, SYNTHETIC_SPEC, encoding,
                            "stimulated")
    assert [p.uns["seed"] for p in preds] == [1, 5]
    for pred in preds:
        assert list(pred.obs_names) == list(split.control.obs_names)
        assert list(pred.var_names) == list(split.control.var_names)
        assert set(pred.obs["cell_type"]) == {"type_2"}
        assert set(pred.obs["condition"]) == {"stimulated"}
        assert pred.X.shape == split.control.X.shape
    assert not np.allclose(preds[0].X, preds[1].X)
    assert set(split.control.obs["condition"]) == {"control"}  # the input is left untouched
