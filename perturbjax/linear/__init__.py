"""The small NumPy path of the regression studies: scikit-learn's RidgeCV and
MultiTaskLassoCV, reimplemented for speed and matched to scikit-learn by the tests."""

from .base import kfold
from .multitask_lasso import MultiTaskLasso, MultiTaskLassoCV, alpha_grid, multitask_lasso_path
from .ridge import RidgeCV, ridge_fit

__all__ = ["MultiTaskLasso", "MultiTaskLassoCV", "RidgeCV", "alpha_grid", "kfold",
           "multitask_lasso_path", "ridge_fit"]
