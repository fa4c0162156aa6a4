"""The shared figure helpers: a loss curve, an image grid, an epoch axis, saving atomically. Matplotlib only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from cae.paths import atomic_path


def save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def epoch_axis(ax: Any, last_epoch: int) -> None:
    """Whole epochs only, with room around a curve of one or few epochs (no 0.96, 0.98 ... ticks)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if last_epoch <= 3:
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.set_xticks(range(1, last_epoch + 1))


def loss_curve(history: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """Train and validation MSE per epoch (log scale: early epochs would flatten the rest)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], "o-", label="train")
    ax.plot(epochs, history["val_loss"], "s-", label="validation")
    best = int(np.argmin(history["val_loss"]))
    ax.scatter(
        [best + 1],
        [history["val_loss"][best]],
        s=120,
        facecolors="none",
        edgecolors="k",
        label=f"best val {history['val_loss'][best]:.5f} (epoch {best + 1})",
        zorder=3,
    )
    ax.set(xlabel="epoch", ylabel="loss (MSE, [0,1] pixels)", yscale="log", title=title)
    epoch_axis(ax, len(epochs))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save(fig, path)


def image_grid(
    rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str, column_titles: Sequence[str] | None = None
) -> Path:
    """One labelled row per array of images (N, H, W, C) in [0, 1]; C=1 is shown in gray."""
    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.25 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            img = np.clip(images[c], 0, 1)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and column_titles:
                ax.set_title(column_titles[c], fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
