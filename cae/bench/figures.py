"""The benchmark's figure: best validation MSE so far against wall time, per strategy, over seeds."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cae.bench.analysis import FRACTIONS, Efficiency, Trials, best_so_far, wall_time


def progress_bands(runs: Sequence[Trials], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max over seeds of the best so far at each time of ``grid``.

    A seed without a result yet counts as worse than any, so the median appears once half of the
    seeds have one; the band spans the seeds that do.
    """
    values = np.array([[best_so_far(r, t) for t in grid] for r in runs], dtype=float)
    med = np.median(values, axis=0)
    med[~np.isfinite(med)] = np.nan
    values[~np.isfinite(values)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns before the first result
        return med, np.nanmin(values, axis=0), np.nanmax(values, axis=0)


def plot_progress(
    runs: Mapping[str, Sequence[Trials]], labels: Mapping[str, str], eff: Efficiency, path: Path, title: str
) -> Path:
    """Median line and min–max band over seeds per strategy; the target and random's time marks."""
    from cae.plots import plt, save  # lazy: matplotlib only when drawing; the Markdown of cae.bench.render needs none

    end = max(wall_time(r) for rs in runs.values() for r in rs)
    grid = np.linspace(0.0, end, 600)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    colours = plt.get_cmap("tab10")
    for i, (name, rs) in enumerate(runs.items()):
        if not rs:
            continue
        # Up to the strategy's last run's end: beyond it there is nothing measured to show.
        upto = grid <= max(wall_time(r) for r in rs)
        med, low, high = progress_bands(rs, grid[upto])
        minutes = grid[upto] / 60
        ax.fill_between(minutes, low, high, step="post", color=colours(i), alpha=0.15, linewidth=0)
        seeds = f"{len(rs)} seed{'s' if len(rs) != 1 else ''}"
        ax.step(minutes, med, where="post", color=colours(i), lw=2, label=f"{labels.get(name, name)} ({seeds})")
    if math.isfinite(eff.target):
        ax.axhline(eff.target, color="k", ls=":", lw=1.2, label=f"target {eff.target:.5f} (random's final best)")
    for f in FRACTIONS:
        ax.axvline(f * eff.random_wall / 60, color="grey", ls="--", lw=0.8)
        ax.text(
            f * eff.random_wall / 60,
            0.01,
            f" {f:.0%} of random's time",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="bottom",
            fontsize=8,
            color="grey",
        )
    ax.set(
        xlabel="wall time since the first trial started (minutes)",
        ylabel="best validation MSE so far (log)",
        yscale="log",
        title=title,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)
