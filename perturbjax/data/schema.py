"""What the columns of a perturbation data set mean, and an early check that they are usable.

A `PerturbationSpec` names the obs column holding the context (cell type, species, cell
line), the column holding the condition and its control value, and optionally a numeric dose
column. `validate` fails before any training starts, with a message that names the file, the
column and what was expected.
"""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbjax.errors import PerturbjaxError


class DataValidationError(PerturbjaxError):
    """A data set does not match what its `PerturbationSpec` promises."""


@dataclasses.dataclass(frozen=True)
class PerturbationSpec:
    """Which obs columns hold the context and the condition of each cell.

    Attributes:
      context_key: obs column of the unit that is held out (cell type, species, cell line).
      condition_key: obs column of the perturbation label.
      control_value: the value of `condition_key` that marks unperturbed cells.
      dose_key: optional numeric obs column (multi-dose designs); a dose is its own condition.
    """

    context_key: str
    condition_key: str
    control_value: str
    dose_key: str | None = None


KANG_SPEC = PerturbationSpec(context_key="cell_type", condition_key="condition",
                             control_value="control")


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def validate(
    adata: ad.AnnData,
    spec: PerturbationSpec,
    held_out: str | list[str] | tuple[str, ...] | None = None,
    source: str | None = None,
) -> None:
    """Raise `DataValidationError` unless `adata` can serve the perturbation benchmark.

    Checks, in order: the obs columns exist; the dose column is numeric; the control value
    occurs; every context has control cells; each held-out context occurs; gene names are
    unique; X holds no NaN or inf. `source` (a file path) is named in every message.
    """
    where = _where(source)
    for key in (spec.context_key, spec.condition_key, spec.dose_key):
        if key is not None and key not in adata.obs.columns:
            raise DataValidationError(
                f"{where}obs column '{key}' is missing; expected it to hold the "
                f"{'context' if key == spec.context_key else 'condition'} of each cell "
                f"(columns present: {sorted(map(str, adata.obs.columns))})"
            )
    if spec.dose_key is not None and not pd.api.types.is_numeric_dtype(adata.obs[spec.dose_key]):
        bad = pd.to_numeric(adata.obs[spec.dose_key], errors="coerce").isna()
        examples = adata.obs[spec.dose_key][bad].astype(str).unique()[:3].tolist()
        raise DataValidationError(
            f"{where}obs column '{spec.dose_key}' must be numeric (a dose); "
            f"found non-numeric values such as {examples}"
        )
    for key in (spec.context_key, spec.condition_key):
        n_missing = int(adata.obs[key].isna().sum())
        if n_missing:
            raise DataValidationError(
                f"{where}obs column '{key}' has {n_missing} missing values (NaN); every cell "
                "needs one (a missing value would become a context or condition named 'nan')"
            )
    condition = adata.obs[spec.condition_key].astype(str)
    is_control = condition == str(spec.control_value)
    if not is_control.any():
        raise DataValidationError(
            f"{where}obs column '{spec.condition_key}' has no cell with the control value "
            f"'{spec.control_value}' (values present: {sorted(condition.unique())[:10]})"
        )
    context = adata.obs[spec.context_key].astype(str)
    without_control = sorted(set(context) - set(context[is_control]))
    if without_control:
        raise DataValidationError(
            f"{where}obs column '{spec.context_key}': contexts {without_control} have no "
            f"control cells ('{spec.condition_key}' == '{spec.control_value}'); every context "
            "needs control cells to be predicted from"
        )
    if held_out is not None:
        wanted = [held_out] if isinstance(held_out, str) else list(held_out)
        missing = [c for c in wanted if c not in set(context)]
        if missing:
            raise DataValidationError(
                f"{where}held-out contexts {missing} are absent from obs column "
                f"'{spec.context_key}' (contexts present: {sorted(set(context))})"
            )
    duplicated = adata.var_names[adata.var_names.duplicated()]
    if len(duplicated):
        raise DataValidationError(
            f"{where}var_names (gene names) must be unique; duplicated: "
            f"{sorted(set(map(str, duplicated)))[:5]}"
        )
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    finite = np.isfinite(values)
    if not finite.all():
        n_bad = int((~finite).sum())
        raise DataValidationError(
            f"{where}X holds {n_bad} NaN or inf values; expected finite expression values"
        )


# log1p of normalised counts stays far below this (log1p(1e6) is 13.8); expm1 of the values,
# which DEG tests read, leaves float32 near 88.
LOG_NORMALISED_MAX = 20.0


def log_normalised_problem(x) -> str | None:
    """Why `x` is not log-normalised expression (raw counts, or values no log-normalised
    file holds), or None. Counts are told apart as non-negative integers above 1."""
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    if not values.size:
        return None
    largest = float(np.max(values))
    if largest > LOG_NORMALISED_MAX:
        kind = "raw counts? " if non_count_example(x) is None else ""
        return (f"X holds values up to {largest:.4g}; log-normalised expression stays below "
                f"{LOG_NORMALISED_MAX:g} ({kind}normalise and log-transform it first, e.g. "
                "scanpy's normalize_total then log1p)")
    if largest > 1 and non_count_example(x) is None:
        return ("X holds only non-negative integers (raw counts?); the models expect "
                "log-normalised expression: normalise and log-transform it first (e.g. "
                "scanpy's normalize_total then log1p)")
    return None


def non_count_example(x) -> float | None:
    """A value of `x` that is not a non-negative integer (so not a raw count), or None."""
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    bad = values[(values < 0) | (values != np.round(values))]
    return float(bad[0]) if bad.size else None
