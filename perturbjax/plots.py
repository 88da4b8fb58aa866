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


def _diagonal(ax, x: np.ndarray, y: np.ndarray) -> None:
    """The line y = x across the range of both."""
    lim = [min(x.min(), y.min()), max(x.max(), y.max())]
    ax.plot(lim, lim, lw=0.8, color="black")


def _finish_panels(fig, axes, ylabel: str, title: str, path: Path) -> None:
    """Shared ending of a row of scatter panels: y label and legend on the first, a title."""
    axes[0, 0].set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


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
        _diagonal(ax, truth, guess)
        r2 = np.corrcoef(truth, guess)[0, 1] ** 2
        ax.set_title(f"{name}  R²={r2:.3f}", fontsize=9)
        ax.set_xlabel("real mean")
    _finish_panels(fig, axes, "predicted mean", title, path)


def embedding_scatter(groups: dict[str, np.ndarray], path: Path, title: str = "",
                      size: float = 4) -> None:
    """First two coordinates of each group (e.g. PCs of control / real / predicted cells)."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, points in groups.items():
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.5, label=name)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def exposure_scatter(truth: np.ndarray, predictions: dict[str, np.ndarray],
                     signatures: list[str], path: Path) -> None:
    """Predicted vs true exposure, one panel per signature, one colour per model."""
    cols = min(3, len(signatures))
    rows = -(-len(signatures) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes.flat, signatures, strict=False)):
        for model, predicted in predictions.items():
            ax.scatter(truth[:, i], predicted[:, i], s=5, alpha=0.5, label=model)
        lim = [truth[:, i].min(), truth[:, i].max()]
        ax.plot(lim, lim, lw=0.8, color="black")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true exposure", fontsize=8)
    axes[0, 0].set_ylabel("predicted exposure")
    axes[0, 0].legend(fontsize=7)
    for ax in axes.flat[len(signatures):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def grouped_bars(metrics: pd.DataFrame, signatures: list[str], path: Path) -> None:
    """R^2 per signature, one bar per model, one panel per experiment (mean over rows)."""
    experiments = list(dict.fromkeys(metrics["experiment"]))
    fig, axes = plt.subplots(1, len(experiments), figsize=(4.0 * len(experiments), 3.0),
                             squeeze=False)
    for ax, experiment in zip(axes[0], experiments, strict=True):
        table = metrics[metrics["experiment"] == experiment].groupby("model", sort=False)[
            [f"r2_{s}" for s in signatures]].mean()
        width = 0.8 / len(table)
        for k, (model, row) in enumerate(table.iterrows()):
            ax.bar(np.arange(len(signatures)) + k * width, row.to_numpy(), width, label=model)
        ax.set_xticks(np.arange(len(signatures)) + 0.4 - width / 2, signatures, rotation=45,
                      fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(experiment, fontsize=9)
    axes[0, 0].set_ylabel("R² (test)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def coefficient_heatmap(coef: np.ndarray, gene_names: np.ndarray, signatures: list[str],
                        k: int, path: Path) -> None:
    """Coefficients (signatures x genes) of the k genes with the largest summed |coef|."""
    top = np.argsort(-np.abs(coef).sum(axis=0))[:k]
    values = coef[:, top].T
    bound = np.abs(values).max() or 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(signatures), 0.8 + 0.3 * k))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(signatures)), signatures, rotation=45, fontsize=8)
    ax.set_yticks(range(len(top)), gene_names[top], fontsize=8)
    fig.colorbar(image, ax=ax, label="coefficient")
    fig.tight_layout()
    _save(fig, path)


def line(values: dict, xlabel: str, ylabel: str, path: Path) -> None:
    """A single series, e.g. silhouette by number of clusters."""
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    ax.plot(list(values), list(values.values()), marker="o")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    _save(fig, path)


def prediction_densities(predictions: dict[str, np.ndarray], measured: dict[str, float],
                         path: Path, xlabel: str = "predicted ln IC50",
                         marks: dict[str, dict[str, float]] | None = None) -> None:
    """One panel per group: a histogram density of per-cell predictions, the measured value
    as a red line and optional other values (e.g. bulk, pseudo-bulk) as dashed lines."""
    names = list(predictions)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.6), squeeze=False,
                             sharey=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.hist(predictions[name], bins=30, density=True, color="tab:blue", alpha=0.6)
        ax.axvline(measured[name], color="red", lw=2, label="measured")
        for (label, values), style in zip((marks or {}).items(), ("--", ":", "-."),
                                          strict=False):
            ax.axvline(values[name], color="black", ls=style, lw=1, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def scatter(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, path: Path,
            highlight: np.ndarray | None = None, title: str = "") -> None:
    """A plain scatter, optionally with some points in red."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.scatter(x, y, s=6, alpha=0.5, color="tab:blue")
    if highlight is not None and highlight.any():
        ax.scatter(np.asarray(x)[highlight], np.asarray(y)[highlight], s=10, color="red")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def boxes(groups: dict[str, dict[str, np.ndarray]], ylabel: str, path: Path) -> None:
    """One panel per outer key, one box per inner key (e.g. ES per line, per signature)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 2.8), squeeze=False)
    for ax, (title, inner) in zip(axes[0], groups.items(), strict=True):
        ax.boxplot(list(inner.values()), showfliers=False)
        ax.set_xticks(range(1, len(inner) + 1), list(inner), rotation=45, ha="right")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    _save(fig, path)


def effect_scatter(truth: np.ndarray, predictions: dict[str, np.ndarray], top: np.ndarray,
                   path: Path, title: str = "", xlabel: str = "true effect",
                   ylabel: str = "predicted effect") -> None:
    """True vs predicted response (differential expression) per gene, one panel per model:
    top DEGs as large dots, the top 10 of them in red (the PerturbX paper's Figure 2)."""
    n = len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
    for ax, (name, pred) in zip(axes[0], predictions.items(), strict=True):
        ax.scatter(truth, pred, s=2, color="grey", alpha=0.4)
        ax.scatter(truth[top], pred[top], s=10, color="tab:blue", label="top DEGs")
        ax.scatter(truth[top[:10]], pred[top[:10]], s=14, color="tab:red", label="top 10")
        _diagonal(ax, truth, pred)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
    _finish_panels(fig, axes, ylabel, title, path)


def score_heatmaps(tables: dict[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """One heatmap per metric (models x contexts), values written in the cells; the colour
    scale runs from 0 (a trivial reference) to 1 (the replicate ceiling)."""
    n = len(tables)
    first = next(iter(tables.values()))
    fig, axes = plt.subplots(1, n, figsize=(0.8 * first.shape[1] * n + 2.5 * n,
                                            0.35 * first.shape[0] + 1.6), squeeze=False)
    for k, (ax, (name, table)) in enumerate(zip(axes[0], tables.items(), strict=True)):
        values = table.to_numpy(float)
        image = ax.imshow(values, cmap="RdBu", vmin=-1.0, vmax=1.0, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, "" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    fontsize=6, color="white" if abs(value) > 0.6 else "black")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right",
                      fontsize=7)
        ax.set_yticks(range(table.shape[0]), table.index if k == 0 else [], fontsize=7)
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="calibrated score")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def importance_bars(ranking: pd.DataFrame, path: Path) -> None:
    """Horizontal bars of gene importance, programme genes (when known) in red."""
    fig, ax = plt.subplots(figsize=(4, 0.25 * len(ranking) + 1))
    known = ranking["in_programme"] if "in_programme" in ranking else np.zeros(len(ranking), bool)
    ax.barh(range(len(ranking))[::-1], ranking["importance"],
            color=np.where(known, "tab:red", "tab:blue"))
    ax.set_yticks(range(len(ranking))[::-1], ranking["gene"], fontsize=7)
    ax.set_xlabel("mean |Shapley| share")
    fig.tight_layout()
    _save(fig, path)
