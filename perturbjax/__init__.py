"""perturbjax: JAX/Flax models and benchmarks for single-cell perturbation response.

`perturbjax.fit(adata, ...)` trains a model on one's own AnnData and returns a model whose
`predict` gives AnnData; `perturbjax.load(path)` reads a saved one back
(`perturbjax.models.api`). Both are imported on first use, so `import perturbjax` stays
light.
"""

from perturbjax.version import __version__

__all__ = ["__version__", "fit", "load"]
_API = ("fit", "load")


def __getattr__(name: str):
    if name in _API:
        from perturbjax.models import api

        return getattr(api, name)
    raise AttributeError(f"module 'perturbjax' has no attribute '{name}'")
