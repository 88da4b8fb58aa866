"""Data layer: schema and validation, loaders, synthetic data, splits and preprocessing."""

from perturbjax.data.cellbench import load_cellbench, read_gene_symbols
from perturbjax.data.datasets import load_h5ad, load_kang, shared_data_dir
from perturbjax.data.exposures import load_expression_exposures, load_signature_profiles
from perturbjax.data.gdsc import DrugResponse, line_key, load_gdsc, load_gdsc_release
from perturbjax.data.preprocess import normalize_log1p, select_hvgs
from perturbjax.data.schema import KANG_SPEC, DataValidationError, PerturbationSpec, validate
from perturbjax.data.splits import HoldOut, hold_out, is_control, stratified_validation_mask
from perturbjax.data.synthetic import SYNTHETIC_SPEC, SyntheticConfig, make_perturbation_data
from perturbjax.data.synthetic_exposures import (
    ExposureSimConfig,
    make_exposure_data,
    make_toy_exposure_data,
)

__all__ = [
    "KANG_SPEC",
    "SYNTHETIC_SPEC",
    "DataValidationError",
    "DrugResponse",
    "ExposureSimConfig",
    "HoldOut",
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
    "load_signature_profiles",
    "make_exposure_data",
    "make_perturbation_data",
    "make_toy_exposure_data",
    "normalize_log1p",
    "read_gene_symbols",
    "select_hvgs",
    "shared_data_dir",
    "stratified_validation_mask",
    "validate",
]
