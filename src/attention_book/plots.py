"""Plotting helpers shared by every chapter, so that all attention maps look alike."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

#: The one colour map the book uses for attention weights.
ATTENTION_CMAP = "Blues"

#: Matrices with at most this many cells get their weights written in the cells by default.
ANNOTATE_MAX_CELLS = 100

#: The smallest font size, in points, of any text in the book's figures.
MIN_FONT_PT = 10.0

#: The house figure style (matplotlib rcParams), set by :func:`use_book_style`. Drawn at 150 dpi
#: and at most about 7 inches wide, a figure shown in the book's column keeps its smallest text
#: at 9 px or more on a 1280 px wide page.
BOOK_STYLE: dict[str, object] = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 150,
    "savefig.dpi": 150,
    "font.size": 11.0,
    "axes.titlesize": 12.0,
    "axes.labelsize": 11.0,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 12.0,
}


def use_book_style() -> None:
    """Apply the house figure style (:data:`BOOK_STYLE`); each chapter calls it once."""
    plt.rcParams.update(BOOK_STYLE)


def _as_numpy(weights: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().float().numpy()
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2:
        raise ValueError(f"attention_heatmap needs a 2-d (T, S) matrix, got shape {weights.shape}")
    return weights


def attention_heatmap(
    weights: torch.Tensor | np.ndarray,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    vmax: float | None = 1.0,
    colorbar: bool = True,
) -> Axes:
    """Draw ``weights (T, S)`` with query tokens down the rows and keys across; return the axes.

    ``annotate`` (default: small maps) writes each weight; ``vmax=1.0`` keeps maps comparable."""
    w = _as_numpy(weights)
    key_tokens = list(query_tokens) if key_tokens is None else list(key_tokens)
    if len(query_tokens) != w.shape[0] or len(key_tokens) != w.shape[1]:
        raise ValueError(
            f"weights of shape {w.shape} need {w.shape[0]} query labels and {w.shape[1]} key "
            f"labels, got {len(query_tokens)} and {len(key_tokens)}"
        )
    if ax is None:
        size = (max(3.0, 0.55 * w.shape[1] + 1.5), max(2.5, 0.5 * w.shape[0] + 1.0))
        _, ax = plt.subplots(figsize=size)
    top = float(w.max()) if vmax is None else vmax
    image = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=0.0, vmax=top if top > 0 else 1.0)
    ax.set_xticks(range(w.shape[1]), key_tokens, rotation=45, ha="right")
    ax.set_yticks(range(w.shape[0]), list(query_tokens))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = w.size <= ANNOTATE_MAX_CELLS
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                dark = w[i, j] > 0.6 * (top if top > 0 else 1.0)
                ax.text(
                    j,
                    i,
                    f"{w[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=MIN_FONT_PT,
                    color="white" if dark else "black",
                )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax


def log_ticks(ax: Axes, x_ticks: Sequence[float]) -> None:
    """Label log-log axes at round values, without minor tick labels.

    Args:
        ax: axes whose data are already drawn on log scales.
        x_ticks: the x values to label (the lengths measured, say).

    The y axis gets ticks at 1, 3, 10, 30, ... times powers of ten inside its current
    limits, which it keeps."""
    ax.set_xticks(x_ticks, [f"{t:,g}" for t in x_ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    low, high = ax.get_ylim()
    if not 0 < low < high:
        raise ValueError(f"log_ticks needs positive y limits, got ({low}, {high})")
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    ticks = [c * 10.0**e for e in decades for c in (1, 3)]
    ticks = [t for t in ticks if low <= t <= high]
    ax.set(yticks=ticks, yticklabels=[f"{t:,g}" for t in ticks], ylim=(low, high))
