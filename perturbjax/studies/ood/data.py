"""The OOD benchmark's data: a design's embedded generator or an h5ad file, validated."""

from __future__ import annotations

import anndata as ad

from perturbjax.data import (
    load_h5ad,
    load_nault,
    load_species,
    make_multidose_data,
    make_perturbation_data,
    make_species_data,
    validate,
)
from perturbjax.data.schema import DataValidationError
from perturbjax.studies.ood.config import OODConfig


def load_data(config: OODConfig) -> ad.AnnData:
    """The configured data set, validated against its schema (raw counts stay raw)."""
    held_out = config.held_out or None
    if config.data == "synthetic":
        adata = {"single": lambda: make_perturbation_data(config.synthetic),
                 "multidose": lambda: make_multidose_data(config.multidose),
                 "species": lambda: make_species_data(config.species_data)}[config.design]()
        validate(adata, config.spec, held_out=held_out, source=f"synthetic {config.design}")
    elif config.design == "multidose":
        adata = load_nault(config.data)  # counts, filtered and log-normalised by the loader
    elif config.design == "species":
        adata = load_species(config.data)
    else:
        adata = load_h5ad(config.data, config.spec, held_out=held_out)
    if held_out and config.data != "synthetic" and config.design != "single":
        validate(adata, config.spec, held_out=held_out, source=config.data)
    missing = set(config.held_out_conditions) - set(adata.obs[config.spec.condition_key]
                                                     .astype(str))
    if missing:
        raise DataValidationError(f"held_out_conditions {sorted(missing)} are not conditions "
                                  f"of the data (obs '{config.spec.condition_key}')")
    return adata
