"""perturbjax: JAX/Flax models and benchmarks for single-cell perturbation response."""

__version__ = "0.1.0"
