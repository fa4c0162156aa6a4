"""The replay's figures (`make bench PLAN=replay`): best-so-far margin over PCA against simulated
hours, the fraction of seeds at the target, and a live study beside its replayed seeds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cae.bench.live import Live
from cae.bench.replay import Trial, margin_band, margins, progress, reached_by
from cae.metrics import psnr_from_mse
from cae.plots import plt, save


def plot_replay(
    out: Path, runs: dict[str, list[list[Trial]]], shown: list[str], grid: np.ndarray, target: float, pca: float
) -> list[Path]:
    """Best-so-far margin over PCA (median, interquartile band) and the fraction that reached the target."""
    hours = grid / 3600
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name in shown:
        q25, q50, q75 = margin_band(runs[name], grid, pca)
        ax.plot(hours, q50, label=name)
        ax.fill_between(hours, q25, q75, alpha=0.15)
    ax.axhline(psnr_from_mse(target) - pca, color="black", linestyle=":", linewidth=1, label="target")
    ax.set(
        xlabel="simulated hours (the table's clock)",
        ylabel="best so far: dB over PCA (validation)",
        title="Best so far, median and interquartile band over seeds",
    )
    ax.legend(loc="lower right", fontsize=8)
    first = save(fig, out / "replay_progress.png")
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name in shown:
        ax.plot(hours, reached_by(runs[name], target, grid), label=name)
    ax.set(
        xlabel="simulated hours (the table's clock)",
        ylabel="fraction of seeds at the target",
        title="Reached random search's final best",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right", fontsize=8)
    return [first, save(fig, out / "replay_reached.png")]


def plot_live(out: Path, live: Live, runs: dict[str, list[list[Trial]]], pca: float, target: float) -> Path:
    """The live study's best-so-far (steps) over its strategy's replayed median and interquartile band."""
    study, strategy, trials = live
    horizon = max([t.end for t in trials] + [t.end for r in runs.get(strategy, []) for t in r] + [1.0])
    grid = np.linspace(0, horizon, 200)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    if strategy in runs:
        q = margin_band(runs[strategy], grid, pca)
        ax.plot(grid / 3600, q[1], label=f"replay of {strategy}: median")
        ax.fill_between(grid / 3600, q[0], q[2], alpha=0.2, label="replay: interquartile band")
    live_margin = margins(progress([trials], grid)[0], pca)
    live_margin[grid > max(t.end for t in trials)] = np.nan  # drawn only as far as the study ran
    ax.step(grid / 3600, live_margin, where="post", color="black", label=f"live study {study}")
    ax.axhline(psnr_from_mse(target) - pca, color="black", linestyle=":", linewidth=1, label="target")
    ax.set(
        xlabel="hours (the replay's simulated clock; the live study's wall time)",
        ylabel="best so far: dB over PCA (validation)",
        title="A live study beside its replayed seeds",
    )
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, out / f"replay_live_{re.sub(r'[^A-Za-z0-9._-]', '-', study)}.png")
