"""The benchmark's settings: the designs, `OODConfig`, and what a run sets on every model."""

from __future__ import annotations

import dataclasses

from perturbjax.data import (
    NAULT_SPEC,
    SPECIES_SPEC,
    MultiDoseConfig,
    PerturbationSpec,
    SpeciesConfig,
    SyntheticConfig,
)
from perturbjax.models import RECOMMENDED, FitSettings, get_model, model_names
from perturbjax.ot import PairingConfig

DESIGNS = ("single", "multidose", "species")


@dataclasses.dataclass(frozen=True)
class OODConfig:
    """Everything that defines one benchmark run.

    `design` is "single", "multidose" or "species". `data` is "synthetic" (the design's
    embedded generator, configured by `synthetic` / `multidose` / `species_data`) or the path
    of an h5ad file: for "single" any file whose obs columns are named by the three keys, for
    the others the published schemas (scVIDR's Nault file with raw counts, scGen's species
    file). `held_out` empty means every context. `epochs` overrides the model configuration's
    epoch count. `conditioning` is the condition vector of every learned model ("one_hot" or
    "log_dose"); `held_out_conditions` are removed from training everywhere (see above).
    `ceiling_repeats` is the number of random half splits of the real cells behind each
    context's replicate ceiling (`metrics.calibration`). The floor references
    (`models.floor_references`) are scored in every run, asked for or not: every calibrated score
    is measured from them. `one_program` trains each learned model on all its missing
    held-out contexts at once, the contexts as folds of one program (`models.pooled`): one
    compilation per model instead of one per context, and the contexts side by side on an
    accelerator; the numbers equal the per-context loop's within float rounding.
    """

    design: str = "single"
    data: str = "synthetic"
    context_key: str = "cell_type"
    condition_key: str = "condition"
    control_value: str = "control"
    counts: bool = False
    n_top_genes: int | None = None
    held_out: tuple[str, ...] = ()
    models: tuple[str, ...] = (RECOMMENDED, "control", "mean_shift", "mean_shift_balanced",
                               "linear")
    configuration: str = "default"
    seeds: tuple[int, ...] = (1, 2, 19193)
    epochs: int | None = None
    checkpoint_every: int = 25
    conditioning: str = "one_hot"
    held_out_conditions: tuple[str, ...] = ()
    pairing: PairingConfig = PairingConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    multidose: MultiDoseConfig = MultiDoseConfig()
    species_data: SpeciesConfig = SpeciesConfig()
    ceiling_repeats: int = 10
    figures: bool = True
    one_program: bool = False

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"OODConfig.design must be one of {DESIGNS}, got '{self.design}'")
        if str(self.spec.control_value) in self.held_out_conditions:
            raise ValueError("held_out_conditions cannot include the control condition")
        if self.ceiling_repeats < 1:
            raise ValueError(f"OODConfig.ceiling_repeats must be at least 1, got "
                             f"{self.ceiling_repeats}")

    @property
    def spec(self) -> PerturbationSpec:
        """The obs columns: the flags for "single", the published schema otherwise."""
        if self.design == "multidose":
            return NAULT_SPEC
        if self.design == "species":
            return SPECIES_SPEC
        return PerturbationSpec(self.context_key, self.condition_key, self.control_value)


def available_models(design: str) -> tuple[str, ...]:
    """Every model that can run on `design` (dose-only models need the multi-dose design)."""
    return tuple(name for name in model_names()
                 if design == "multidose" or not get_model(name).doses_only)


def fit_settings(config: OODConfig) -> FitSettings:
    """What the run sets on every learned model."""
    return FitSettings(configuration=config.configuration, epochs=config.epochs,
                       checkpoint_every=config.checkpoint_every,
                       conditioning=config.conditioning, doses=config.design == "multidose",
                       pairing=config.pairing)

