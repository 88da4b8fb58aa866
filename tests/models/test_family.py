"""A model family's settings, its one fit per condition and its predictions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perturbjax.data import MultiDoseConfig, make_multidose_data
from perturbjax.data.designs import NAULT_SPEC
from perturbjax.errors import PerturbjaxError
from perturbjax.models import FitSettings, ModelFamily, get_model, mtae
from perturbjax.models.fitting import (
    ConditionEncoding,
    TrainingPool,
    fit_on_anndata,
    predict_decoded,
)
from perturbjax.train import TrainConfig

TINY_MODEL = mtae.MTAeConfig(hidden=(16,), latent=4)
TINY_TRAIN = TrainConfig(epochs=2, batch_size=16, patience=None, select_best=False)


def test_a_shorter_run_keeps_the_phase_proportions_and_checkpoints_as_set():
    family = get_model("mtae_adv")
    model, train = family.config("original")
    short, short_train = family.configured(FitSettings("original", epochs=train.epochs // 4,
                                                       checkpoint_every=5))
    assert short_train.epochs == train.epochs // 4 and short_train.checkpoint_every == 5
    assert short.pretrain_epochs == round(model.pretrain_epochs / 4)
    assert short.discriminator_epochs == round(model.discriminator_epochs / 4)


def test_settings_reach_the_model_configuration_through_its_family():
    model, _ = get_model("mtae").configured(FitSettings("original", conditioning="log_dose",
                                                      doses=True))
    assert model.conditioning == "log_dose" and model.film_embedding == 16
    assert get_model("mtae").configured(FitSettings("original"))[0].film_embedding == 0


def test_a_baseline_runs_its_published_configuration_under_any_name():
    scgen = get_model("scgen")
    assert scgen.config("default") == scgen.config("original") == scgen.configs["published"]
    with pytest.raises(KeyError, match="no configuration 'nope'"):
        get_model("mtae").config("nope")


@pytest.fixture(scope="module")
def doses():
    adata = make_multidose_data(MultiDoseConfig(n_types=3, n_genes=30, doses=(1.0, 10.0),
                                                largest=40, smallest=40, n_response_genes=8))
    return TrainingPool(adata, NAULT_SPEC, ConditionEncoding.from_adata(adata, NAULT_SPEC))


def test_a_single_perturbation_family_trains_one_program_per_condition(doses):
    family = ModelFamily("tiny", {"default": (TINY_MODEL, TINY_TRAIN)}, mtae.build,
                         per_condition=True)
    fitted = family.fit(doses, (1, 2), FitSettings(), conditions=["10"])
    assert list(fitted.parts) == ["10"]
    assert fitted.parts["10"].pool.encoding.labels == ("0", "10")
    control = doses.cells[doses.cells.obs["condition"].astype(str) == "0"]
    assert [p.shape for p in fitted.predict(control, "10")] == [control.shape] * 2
    assert [r["seed"] for r in fitted.runs("10")] == [1, 2]
    with pytest.raises(PerturbjaxError, match="trained for the conditions"):
        fitted.predict(control, "1")


def test_fitted_predictions_are_those_of_the_plain_fit(doses):
    family = ModelFamily("tiny", {"default": (TINY_MODEL, TINY_TRAIN)}, mtae.build)
    fitted = family.fit(doses, (1,), FitSettings())
    objective = mtae.build(TINY_MODEL, doses.task())
    result = fit_on_anndata(objective, dataclasses.replace(TINY_TRAIN, checkpoint_every=0),
                            doses.cells, doses.spec, doses.encoding, (1,))
    control = doses.cells[:20]
    np.testing.assert_array_equal(fitted.predict(control, "1")[0],
                                  predict_decoded(objective, result, doses, control, "1")[0])


def test_a_recorded_schedule_is_described_by_its_configuration_and_budget():
    family, settings = get_model("mtae"), FitSettings()
    for name, selection in (("default", "2 inner contexts' response"),
                            ("reconstruction", "validation reconstruction")):
        schedule = family.schedule(FitSettings(configuration=name))
        described = family.describe(schedule, settings)
        assert described["configuration"] == name
        assert described["budget"].endswith(f"selected on {selection}")
    shorter = family.schedule(FitSettings(configuration="reconstruction", epochs=7))
    assert family.describe(shorter, settings) == {
        "configuration": "reconstruction",
        "budget": "7 epochs x 2 rates, selected on validation reconstruction"}
    changed = family.schedule(settings)
    changed["train"]["patience"] = 1234
    assert family.describe(changed, settings)["configuration"] == "unnamed"
    older = family.schedule(FitSettings(configuration="reconstruction"))
    del older["train"]["inner_contexts"]  # recorded before the field existed, at its default
    assert family.describe(older, settings)["configuration"] == "reconstruction"
