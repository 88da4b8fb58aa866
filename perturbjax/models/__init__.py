"""Models by name: every built-in model registered once (`registry`), learned families (each
with named configurations) and references alike."""

from __future__ import annotations

from perturbjax.models import flow, mtae, scbutterfly, scgen, scpregan, scvidr
from perturbjax.models.family import ModelFamily
from perturbjax.models.references import (
    ReferenceModel,
    predict_control,
    predict_linear,
    predict_mean_shift,
    predict_mean_shift_balanced,
)
from perturbjax.models.registry import (
    RECOMMENDED,
    check_model_names,
    floor_references,
    get_model,
    model_names,
    register_model,
    unregister_model,
)
from perturbjax.models.settings import FitSettings

for _name, (_configs, _pairing) in mtae.VARIANTS.items():
    register_model(ModelFamily(_name, _configs, mtae.build, _pairing, adjust=mtae.adjust))
register_model(ModelFamily("mtflow", flow.CONFIGS, flow.build, "ot", flow.predict_flow,
                           self_pairs=False, adjust=flow.adjust,
                           space_components=flow.space_components))
register_model(ModelFamily("scgen", scgen.CONFIGS, scgen.build, predict=scgen.predict,
                           per_condition=True))
register_model(ModelFamily("scvidr", scvidr.CONFIGS, scvidr.build,
                           predict=scvidr.predict_single, per_condition=True))
register_model(ModelFamily("scpregan", scpregan.CONFIGS, scpregan.build, pairing="unpaired",
                           per_condition=True))
register_model(ModelFamily("scbutterfly", scbutterfly.CONFIGS, scbutterfly.build,
                           pairing="ot", per_condition=True, self_pairs=False))
register_model(ModelFamily("scvidr_multi", scvidr.CONFIGS, scvidr.build,
                           predict=scvidr.predict_multi, doses_only=True))
register_model(ReferenceModel("control", predict_control, floor=True))
register_model(ReferenceModel("mean_shift", predict_mean_shift, floor=True))
register_model(ReferenceModel("mean_shift_balanced", predict_mean_shift_balanced, floor=True))
register_model(ReferenceModel("linear", predict_linear))

__all__ = ["RECOMMENDED", "FitSettings", "ModelFamily", "check_model_names", "configuration_names",
           "floor_references", "get_model", "model_names", "register_model", "unregister_model"]


def configuration_names() -> tuple[str, ...]:
    """Every named configuration of the registered learned models."""
    return tuple(sorted({name for model in model_names("learned")
                         for name in getattr(get_model(model), "configs", {})}))
