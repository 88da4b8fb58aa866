"""Reference predictors of a perturbation's mean effect on an unseen cell line.

Each maps the training lines' mean effects (rows x genes) and unperturbed profiles to a
prediction for the test lines:
- `mean_effect`: the average effect over the training lines (the paper's baseline);
- `group_mean_effect`: the average over training lines of the test line's group, e.g. TP53
  status (it reads the label, so it is an upper reference rather than a competitor);
- `nearest_lines_effect`: the average effect of the k training lines whose unperturbed mean
  profile is closest (Euclidean);
- `ridge_effect`: multi-output ridge from the unperturbed mean profile to the effect, with the
  penalty chosen by leave-one-out (`perturbjax.linear.RidgeCV`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perturbjax.linear import RidgeCV

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))


def mean_effect(effects: np.ndarray, n_test: int) -> np.ndarray:
    """The training lines' average effect, for each of `n_test` lines."""
    return np.repeat(effects.mean(axis=0, keepdims=True), n_test, axis=0)


def group_mean_effect(effects: np.ndarray, train_groups: np.ndarray,
                      test_groups: np.ndarray) -> np.ndarray:
    """The average effect of the training lines in each test line's group (all training
    lines where the group has none)."""
    overall = effects.mean(axis=0)
    return np.stack([effects[train_groups == g].mean(axis=0) if (train_groups == g).any()
                     else overall for g in test_groups])


def nearest_lines_effect(effects: np.ndarray, train_profiles: np.ndarray,
                         test_profiles: np.ndarray, k: int = 3) -> np.ndarray:
    """The average effect of the `k` training lines nearest in unperturbed profile."""
    k = min(k, len(effects))
    distances = ((test_profiles[:, None, :] - train_profiles[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1)[:, :k]
    return effects[nearest].mean(axis=1)


def ridge_effect(effects: np.ndarray, train_profiles: np.ndarray, test_profiles: np.ndarray,
                 alphas: Sequence[float] = RIDGE_ALPHAS) -> np.ndarray:
    """Ridge regression of the effect on the unperturbed profile (one alpha for all genes,
    chosen by efficient leave-one-out)."""
    model = RidgeCV(alphas=alphas, alpha_per_target=False).fit(train_profiles, effects)
    return model.predict(test_profiles)
