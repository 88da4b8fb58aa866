"""perturbjax: JAX/Flax models and benchmarks for single-cell perturbation response.

`perturbjax.fit(adata, ...)` trains a model on one's own AnnData and returns a model whose
`predict` gives AnnData; `perturbjax.load(path)` reads a saved one back
(`perturbjax.models.api`); `perturbjax.evaluate` and `perturbjax.plot_response` score a
prediction against real cells (`perturbjax.metrics.own_prediction`). All are imported on
first use, so `import perturbjax` stays light.
"""

from perturbjax.version import __version__

__all__ = ["__version__", "evaluate", "fit", "load", "plot_response"]
_API = ("fit", "load")
_SCORING = ("evaluate", "plot_response")


def __getattr__(name: str):
    if name in _API:
        from perturbjax.models import api

        return getattr(api, name)
    if name in _SCORING:
        from perturbjax.metrics import own_prediction

        return getattr(own_prediction, name)
    raise AttributeError(f"module 'perturbjax' has no attribute '{name}'")
