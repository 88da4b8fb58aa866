"""Figures of the studies, written as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from perturbjax.files import atomic_target


def _save(fig, path: Path) -> None:
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def metric_bars(results: pd.DataFrame, metrics: list[str], path: Path,
                model_key: str = "model") -> None:
    """One panel per metric: mean +- sd over contexts and seeds for each model."""
    stats = results.groupby(model_key)[metrics].agg(["mean", "std"])
    models = stats.index.tolist()
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        ax.bar(range(len(models)), stats[(metric, "mean")],
               yerr=stats[(metric, "std")].fillna(0), color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
        ax.set_title(metric, fontsize=9)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def mean_scatter(real: np.ndarray, predictions: dict[str, np.ndarray], highlight: np.ndarray,
                 path: Path, title: str = "") -> None:
    """Per-gene mean of real vs predicted cells, one panel per model, top DEGs in red."""
    n = len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
    truth = real.mean(0)
    for ax, (name, pred) in zip(axes[0], predictions.items(), strict=True):
        guess = pred.mean(0)
        ax.scatter(truth, guess, s=3, color="grey", alpha=0.5)
        ax.scatter(truth[highlight], guess[highlight], s=6, color="tab:red", label="top DEGs")
        lim = [min(truth.min(), guess.min()), max(truth.max(), guess.max())]
        ax.plot(lim, lim, lw=0.8, color="black")
        r2 = np.corrcoef(truth, guess)[0, 1] ** 2
        ax.set_title(f"{name}  R²={r2:.3f}", fontsize=9)
        ax.set_xlabel("real mean")
    axes[0, 0].set_ylabel("predicted mean")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def embedding_scatter(groups: dict[str, np.ndarray], path: Path, title: str = "") -> None:
    """First two coordinates of each group (e.g. PCs of control / real / predicted cells)."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, points in groups.items():
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, label=name)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
