"""Regression problems with a known sparse answer, and how far two solutions differ."""

import numpy as np


def sparse_problem(n, p, t, seed=0, noise=1.0):
    """Y depends on 5 features plus Gaussian noise; features correlated through a factor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + rng.normal(size=(n, 1))
    y = x[:, :5] @ rng.normal(size=(5, t)) + noise * rng.normal(size=(n, t))
    return x, y


def relative(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))
