"""The signature study's data: the user's two tables, or the semi-synthetic set."""

from __future__ import annotations

import anndata as ad

from perturbjax.data import data_folder
from perturbjax.data.exposures import load_expression_exposures
from perturbjax.data.synthetic_exposures import ExposureSimConfig, make_exposure_data
from perturbjax.studies.signatures.config import SignatureStudyConfig


def load_data(config: SignatureStudyConfig) -> ad.AnnData:
    """Counts with `obsm['exposures']`: the user's tables, or the semi-synthetic set."""
    if config.expression:
        return load_expression_exposures(config.expression, config.exposures)
    data_dir = data_folder(config.data_dir, "the semi-synthetic set's real parts (or give "
                           "your own tables)")
    return make_exposure_data(data_dir, ExposureSimConfig(n_cells=config.n_cells,
                                                          seed=config.seed))
