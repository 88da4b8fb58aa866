"""Cells shared by the metric tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def groups():
    """Two groups of cells of unequal size and spread."""
    rng = np.random.default_rng(0)
    # Sizes that are not multiples of the 256-row chunk, so padding and masking are exercised.
    x = rng.normal(0.0, 1.0, (301, 12)).astype(np.float32)
    y = rng.normal(0.4, 1.3, (517, 12)).astype(np.float32)
    return x, y
