"""One model interface: a model defined here, registered once, runs unchanged through the
benchmark and the library API; references and the registry behave as the interface says."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perturbjax
from perturbjax.data import hold_out
from perturbjax.data.schema import PerturbationSpec
from perturbjax.errors import PerturbjaxError
from perturbjax.models import (
    ModelFamily,
    check_model_names,
    floor_references,
    get_model,
    model_names,
    register_model,
    unregister_model,
)
from perturbjax.models.fitting import Task, source_and_target
from perturbjax.models.references import predict_mean_shift
from perturbjax.studies import ood
from perturbjax.train import TrainConfig
from perturbjax.train.objective import Batch, Objective, PyTree
from tests.conftest import TINY

NAME = "learned_shift"
SPEC = PerturbationSpec("cell_type", "condition", "control")


class ShiftNet(nn.Module):
    """x + a learned shift per condition code."""

    n_genes: int
    n_codes: int

    @nn.compact
    def __call__(self, x: jax.Array, condition: jax.Array, train: bool = False) -> jax.Array:
        shifts = self.param("shifts", nn.initializers.zeros, (self.n_codes, self.n_genes))
        return x + shifts[condition]


@dataclasses.dataclass(frozen=True)
class ShiftObjective(Objective):
    """Trained on optimal-transport pairs: control cell + shift -> its perturbed partner."""

    def inputs(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return source_and_target(batch)[0], batch["condition"]

    def loss(self, params: PyTree, model_state: PyTree, batch: Batch, key: jax.Array):
        target = source_and_target(batch)[1]
        prediction = self.apply_eval(params, model_state, *self.inputs(batch))
        return jnp.mean((prediction - target) ** 2), model_state

    def validation_loss(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.loss(params, model_state, batch, jax.random.PRNGKey(0))[0]

    def predict(self, params: PyTree, model_state: PyTree, batch: Batch) -> jax.Array:
        return self.apply_eval(params, model_state, *self.inputs(batch))


@dataclasses.dataclass(frozen=True)
class ShiftConfig:
    """The model has no architecture settings."""


def build(config: ShiftConfig, task: Task) -> ShiftObjective:
    return ShiftObjective(ShiftNet(task.n_genes, len(task.encoding.labels)))


@pytest.fixture
def learned_shift():
    """The model of this file, registered for one test (one file and one registration)."""
    model = register_model(ModelFamily(NAME, {"default": (ShiftConfig(), TrainConfig(
        epochs=30, batch_size=32, learning_rates=(0.05,), warmup_steps=0))}, build,
        pairing="ot"))
    yield model
    unregister_model(NAME)


def test_a_model_defined_in_a_test_runs_unchanged_through_the_benchmark(learned_shift,
                                                                         tmp_path):
    config = ood.OODConfig(held_out=("type_0",), seeds=(1, 2), synthetic=TINY,
                           models=(NAME, "mean_shift"), ceiling_repeats=2, figures=False)
    metrics = ood.run(config, tmp_path).metrics.set_index(["model", "seed"])
    assert metrics.loc[NAME].index.tolist() == [1, 2]
    # a learned mean shift: as good as the mean shift reference, far from the control cells
    learned = metrics.loc[NAME, "pearson_delta_top100"].mean()
    assert learned > metrics.loc["control", "pearson_delta_top100"].iloc[0]
    assert learned == pytest.approx(metrics.loc["mean_shift", "pearson_delta_top100"].iloc[0],
                                    abs=0.1)


def test_a_model_defined_in_a_test_fits_predicts_saves_and_loads(learned_shift, tiny_adata,
                                                                 tmp_path):
    model = perturbjax.fit(tiny_adata, model=NAME, held_out="type_0", seeds=(1, 2),
                           calibrate=False)
    control = hold_out(tiny_adata, SPEC, "type_0").control
    pred = model.predict(control, "stimulated")
    assert set(pred.layers) == {"member_1", "member_2", "std"}
    model.save(tmp_path / "saved")
    again = perturbjax.load(tmp_path / "saved")
    np.testing.assert_array_equal(again.predict(control, "stimulated").X, pred.X)
    history, loaded = model.history()[None], again.history()[None]
    np.testing.assert_array_equal(loaded["val_loss"], history["val_loss"])
    assert history["val_loss"].shape[1] == 30


def test_a_reference_is_fitted_saved_and_loaded_like_any_model(tiny_adata, tmp_path):
    split = hold_out(tiny_adata, SPEC, "type_0")
    model = perturbjax.fit(tiny_adata, model="mean_shift", held_out="type_0", calibrate=False)
    expected = predict_mean_shift(split, SPEC, "stimulated")
    np.testing.assert_array_equal(model.predict(split.control, "stimulated").X, expected)
    model.save(tmp_path / "reference")
    again = perturbjax.load(tmp_path / "reference")
    np.testing.assert_array_equal(again.predict(split.control, "stimulated").X, expected)


def test_the_registry_is_the_one_list_of_names():
    assert set(floor_references()) == {"control", "mean_shift", "mean_shift_balanced"}
    assert set(model_names("reference")) == {*floor_references(), "linear"}
    assert "mtae" in model_names("learned") and "mtae" not in model_names("reference")
    with pytest.raises(ValueError, match=r"unknown models \['mtea'\]"):
        check_model_names(["mtae", "mtea"])
    with pytest.raises(KeyError, match="unknown model 'mtea'"):
        get_model("mtea")
    with pytest.raises(ValueError, match="registered already"):
        register_model(get_model("mtae"))


def test_a_typo_in_the_configuration_is_refused_before_the_data_loads(tmp_path):
    config = ood.OODConfig(data=str(tmp_path / "absent.h5ad"), configuration="defualt")
    with pytest.raises(PerturbjaxError, match="no configuration 'defualt'"):
        ood.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
