"""scVIDR (Kana et al. 2023): scGen's VAE with a perturbation vector regressed on the
context's control state.

- vidrSingle: for every training context c with both conditions, delta_c = mean latent of
  its perturbed cells - mean latent of its control cells. A linear regression (least
  squares, scikit-learn) maps the control centroid of c to delta_c; the held-out context's
  delta is the regression at its own control centroid. A context whose response depends on
  its control state gets its own vector, where scGen gives every context the same one.
- vidrMult: one VAE for every dose; the regression predicts the highest dose's delta, and
  dose d is reached by log-linear interpolation: z = z_ctrl + delta x ln(1 + d) / ln(1 + d_max),
  so doses it was never fitted on (or never saw) are predicted too.
"""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
from sklearn.linear_model import LinearRegression

from perturbjax.models import scgen
from perturbjax.models.fitting import TrainingPool
from perturbjax.models.latent_arithmetic import group_means, member_decode, member_latents
from perturbjax.train import FitResult

# scVIDR trains scGen's network with batches of 128.
PUBLISHED = (scgen.PUBLISHED[0], dataclasses.replace(scgen.PUBLISHED[1], batch_size=128))
CONFIGS = {"published": PUBLISHED}
build = scgen.build


def regressed_delta(latents: np.ndarray, contexts: np.ndarray, conditions: np.ndarray,
                    control: str, condition: str, centroid: np.ndarray) -> np.ndarray:
    """(members, latent): per member, the linear regression of delta_c on the control
    centroid of c over the training contexts with both conditions, at `centroid[member]`."""
    is_control, is_perturbed = conditions == control, conditions == condition
    both = sorted(set(contexts[is_control]) & set(contexts[is_perturbed]))
    if len(both) < 2:
        raise ValueError(f"scVIDR needs at least two training contexts with both '{control}' "
                         f"and '{condition}' cells to fit its regression; found {both}")
    keep_c = is_control & np.isin(contexts, both)
    keep_p = is_perturbed & np.isin(contexts, both)
    _, control_means = group_means(latents[:, keep_c], contexts[keep_c])
    _, perturbed_means = group_means(latents[:, keep_p], contexts[keep_p])
    deltas = perturbed_means - control_means
    return np.stack([LinearRegression().fit(c, d).predict(t[None])[0]
                     for c, d, t in zip(control_means, deltas, centroid, strict=True)])


def _predict(objective: scgen.ScGenObjective, result: FitResult, pool: TrainingPool,
             control: ad.AnnData, fitted: str, scale: float) -> list[np.ndarray]:
    """decode(z(control) + scale x the regressed delta of condition `fitted`)."""
    train, spec = pool.cells, pool.spec
    latents = member_latents(objective, result, train.X)
    z_control = member_latents(objective, result, control.X)
    delta = regressed_delta(latents, train.obs[spec.context_key].astype(str).to_numpy(),
                            train.obs[spec.condition_key].astype(str).to_numpy(),
                            str(spec.control_value), fitted, z_control.mean(axis=1))
    return list(member_decode(objective, result, z_control + scale * delta[:, None, :]))


def predict_single(objective: scgen.ScGenObjective, result: FitResult, pool: TrainingPool,
                   control: ad.AnnData, condition: str) -> list[np.ndarray]:
    """vidrSingle: one prediction per member for `condition`."""
    return _predict(objective, result, pool, control, condition, 1.0)


def dose_scale(dose: float, highest: float) -> float:
    """ln(1 + dose) / ln(1 + highest): vidrMult's fraction of the highest dose's vector."""
    return float(np.log1p(dose) / np.log1p(highest))


def predict_multi(objective: scgen.ScGenObjective, result: FitResult, pool: TrainingPool,
                  control: ad.AnnData, condition: str) -> list[np.ndarray]:
    """vidrMult: the regressed vector of the highest training dose, scaled to `condition`
    (labels must be doses)."""
    spec = pool.spec
    seen = set(pool.cells.obs[spec.condition_key].astype(str))
    labels = sorted(seen - {str(spec.control_value)})
    try:
        doses = {label: float(label) for label in [*labels, condition]}
    except ValueError as error:
        raise ValueError(f"vidrMult needs numeric dose labels in obs '{spec.condition_key}'; "
                         f"got {[*labels, condition]}") from error
    highest = max(labels, key=doses.get)
    return _predict(objective, result, pool, control, highest,
                    dose_scale(doses[condition], doses[highest]))
