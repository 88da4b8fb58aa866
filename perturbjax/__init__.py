"""perturbjax: JAX/Flax models and benchmarks for single-cell perturbation response.

`perturbjax.fit(adata, ...)` trains a model on one's own AnnData and returns a model whose
`predict` gives AnnData; `perturbjax.load(path)` reads a saved one back
(`perturbjax.models.trained`). Both are imported on first use, so `import perturbjax` stays
light.
"""

__version__ = "0.1.0"
__all__ = ["fit", "load"]


def __getattr__(name: str):
    if name in __all__:
        from perturbjax.models import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'perturbjax' has no attribute '{name}'")
