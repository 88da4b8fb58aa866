"""Data layer: schema and validation, loaders, synthetic data, splits and preprocessing."""

from perturbjax.data.bags import BagData
from perturbjax.data.cellbench import load_cellbench, read_gene_symbols
from perturbjax.data.datasets import data_folder, load_h5ad, load_kang, shared_data_dir
from perturbjax.data.designs import NAULT_SPEC, SPECIES_SPEC, load_nault, load_species
from perturbjax.data.exposures import load_expression_exposures, load_signature_profiles
from perturbjax.data.gdsc import DrugResponse, line_key, load_gdsc, load_gdsc_release
from perturbjax.data.mixseq import MIXSEQ_SPEC, load_mixseq
from perturbjax.data.preprocess import normalize_log1p, select_hvgs
from perturbjax.data.schema import KANG_SPEC, DataValidationError, PerturbationSpec, validate
from perturbjax.data.splits import HoldOut, hold_out, is_control, stratified_validation_mask
from perturbjax.data.synthetic import SYNTHETIC_SPEC, SyntheticConfig, make_perturbation_data
from perturbjax.data.synthetic_designs import (
    MultiDoseConfig,
    SpeciesConfig,
    make_multidose_data,
    make_species_data,
)
from perturbjax.data.synthetic_exposures import (
    ExposureSimConfig,
    make_exposure_data,
    make_toy_exposure_data,
)
from perturbjax.data.synthetic_mixseq import MixSeqSimConfig, make_mixseq_like, make_toy_mixseq

__all__ = [
    "KANG_SPEC",
    "MIXSEQ_SPEC",
    "NAULT_SPEC",
    "SPECIES_SPEC",
    "SYNTHETIC_SPEC",
    "BagData",
    "DataValidationError",
    "DrugResponse",
    "ExposureSimConfig",
    "HoldOut",
    "MixSeqSimConfig",
    "MultiDoseConfig",
    "SpeciesConfig",
    "PerturbationSpec",
    "SyntheticConfig",
    "hold_out",
    "is_control",
    "line_key",
    "load_cellbench",
    "load_expression_exposures",
    "load_gdsc",
    "load_gdsc_release",
    "load_h5ad",
    "load_kang",
    "load_mixseq",
    "load_nault",
    "load_species",
    "load_signature_profiles",
    "make_exposure_data",
    "make_mixseq_like",
    "make_multidose_data",
    "make_perturbation_data",
    "make_species_data",
    "make_toy_exposure_data",
    "make_toy_mixseq",
    "normalize_log1p",
    "read_gene_symbols",
    "select_hvgs",
    "data_folder",
    "shared_data_dir",
    "stratified_validation_mask",
    "validate",
]
