"""Data layer: schema and validation, loaders, synthetic data, splits and preprocessing."""

from perturbjax.data.datasets import load_h5ad, load_kang, shared_data_dir
from perturbjax.data.preprocess import normalize_log1p, select_hvgs
from perturbjax.data.schema import KANG_SPEC, DataValidationError, PerturbationSpec, validate
from perturbjax.data.splits import HoldOut, hold_out, is_control, stratified_validation_mask
from perturbjax.data.synthetic import SYNTHETIC_SPEC, SyntheticConfig, make_perturbation_data

__all__ = [
    "KANG_SPEC",
    "SYNTHETIC_SPEC",
    "DataValidationError",
    "HoldOut",
    "PerturbationSpec",
    "SyntheticConfig",
    "hold_out",
    "is_control",
    "load_h5ad",
    "load_kang",
    "make_perturbation_data",
    "normalize_log1p",
    "select_hvgs",
    "shared_data_dir",
    "stratified_validation_mask",
    "validate",
]
