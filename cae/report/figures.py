"""The report's own figures: the search in dB over PCA, size vs error, rate–distortion, the reconstruction grid.

Optuna's figures (history, importances, front) come from ``cae.search.figures``; these draw values
already computed (points, correlations, the baseline tables, scored models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cae.baselines import BaselineTable
from cae.data import CLASSES, Splits, to_unit
from cae.report.data import Rank
from cae.report.points import Point
from cae.search import attrs

# lazy: matplotlib (cae.plots) and TensorFlow (cae.tracked_training, cae.train) load only when a figure is drawn:
# the module itself, like the values it draws, needs neither.


def _plain_log_ticks(axis: Any) -> None:
    """1,024 rather than 10^3 on a log axis: code sizes and parameter counts are read as numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def plain(v: float, _: Any) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:g}"

    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(plain))


def plot_size_vs_error(points: list[Point], rho_code: Rank, rho_params: Rank, path: Path) -> Path:
    """Validation MSE against code size and against parameter count, one panel each, trials labelled."""
    from cae.plots import plt, save

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    errs = [p.val_loss for p in points]
    panels = (
        (axes[0], [p.code_values for p in points], "code size (values at the narrowest layer)", rho_code, "linear"),
        (axes[1], [p.n_params for p in points], "parameters", rho_params, "log"),
    )
    for ax, x, name, rho, xscale in panels:
        ax.scatter(x, errs, c="tab:blue", alpha=0.8)
        for p, xv in zip(points, x, strict=True):
            ax.annotate(str(p.trial), (xv, p.val_loss), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set(
            xscale=xscale,
            yscale="log",
            xlabel=name,
            ylabel="best validation MSE",
            title=f"Spearman ρ = {rho[0]:.2f} (p = {rho[1]:.2g}, n = {len(points)})",
        )
        if xscale == "log":
            _plain_log_ticks(ax.xaxis)
        _plain_log_ticks(ax.yaxis)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Completed trials: does size predict error?")
    return save(fig, path)


def plot_rate_distortion(
    points: list[Point], front: list[Point], val: BaselineTable, path: Path, scored: list[Any]
) -> Path:
    """Validation PSNR vs code size: trials, the front, PCA (float, 8-bit) and the thumbnail on the same images.

    ``scored``: :class:`~cae.report.data.ScoredModel` rows, drawn on the test split (filled star: float
    code at its code size; open star: 8-bit code at its latent's bytes).
    """
    from cae.plots import plt, save

    fig, ax = plt.subplots(figsize=(9.5, 6))
    sizes = sorted(val.pca)
    ax.plot(sizes, [val.pca[k] for k in sizes], "-", color="k", lw=2, label="PCA, float coefficients (linear)")
    ax.plot(sizes, [val.pca_q8[k] for k in sizes], ":", color="k", lw=2, label="PCA, 8-bit coefficients")
    ax.plot(
        [c.values for c in val.thumbnail],
        [c.psnr for c in val.thumbnail],
        "-",
        color="gray",
        lw=1.5,
        label="bicubic thumbnail s×s → 32×32 (no learning)",
    )
    ax.scatter([p.code_values for p in points], [p.val_psnr for p in points], alpha=0.5, label="completed trials")
    ax.plot([p.code_values for p in front], [p.val_psnr for p in front], "o-", color="tab:red", label="Pareto front")
    for i, m in enumerate(scored):
        colour = f"C{(i + 2) % 10}"
        ax.plot(m.code_values, m.test_psnr, "*", ms=14, color=colour, label=f"{m.label} (test)")
        ax.plot(m.latent_values, m.q8_psnr, "*", ms=14, mfc="none", color=colour)
    ax.set(
        xscale="log",
        xlabel="code size (values: the narrower of latent and bottleneck; 8-bit: bytes)",
        ylabel="PSNR (dB; validation unless marked test)",
        title="Rate–distortion: autoencoders against PCA and a thumbnail codec",
    )
    _plain_log_ticks(ax.xaxis)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")  # PSNR rises with size: the upper left stays empty
    return save(fig, path)


def reconstruction_grid(splits: Splits, models: list[tuple[str, Any]], path: Path, title: str) -> Path:
    """The originals and each model's reconstruction of the same test images, one per class."""
    from cae.plots import image_grid
    from cae.tracked_training import grid_indices
    from cae.train import predict

    idx = grid_indices(splits.y_test)
    rows = [("original", to_unit(splits.x_test[idx]))]
    rows += [(label, predict(model, splits.x_test[idx])) for label, model in models]
    return image_grid(rows, path, title, [CLASSES[c] for c in splits.y_test[idx]])


def plot_search_progress(trials: list[Any], pca_val: float, lines: dict[str, float], path: Path) -> Path:
    """Each trial's validation margin over PCA at the study's code size (dB) in the order it ran, the best
    so far, and the baselines as lines (``lines``: name -> validation PSNR). A pruned trial is shown at its
    best epoch before it stopped; an enqueued point (the study's prior) is ringed."""
    import math

    from cae.metrics import psnr_from_mse
    from cae.plots import plt, save

    fig, ax = plt.subplots(figsize=(9, 4.8), layout="constrained")
    best, xs, ys = -math.inf, [], []
    for t in sorted(trials, key=lambda t: t.number):
        values = [t.value] if t.state.name == "COMPLETE" else list(t.intermediate_values.values())
        if t.state.name not in ("COMPLETE", "PRUNED") or not values:
            continue
        margin = psnr_from_mse(min(values)) - pca_val
        complete = t.state.name == "COMPLETE"
        ax.scatter(
            t.number,
            margin,
            s=36 if complete else 18,
            marker="o" if complete else "x",
            color="tab:blue" if complete else "0.55",
            zorder=3,
        )
        if attrs.enqueued(t) is not None:
            ax.scatter(t.number, margin, s=140, facecolors="none", edgecolors="tab:red", zorder=4)
        if complete:
            best = max(best, margin)
            xs.append(t.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:blue", label="best so far (completed trials)")
    ax.axhline(0.0, color="black", linewidth=1, label="PCA at the same code size")
    for (name, psnr), style in zip(lines.items(), (":", "--", "-."), strict=False):
        if psnr is not None and math.isfinite(psnr) and psnr - pca_val > -3:  # a line far below would flatten the plot
            ax.axhline(psnr - pca_val, color="0.3", linestyle=style, linewidth=1, label=name)
    ax.scatter([], [], marker="x", color="0.55", label="pruned (its best epoch)")
    ax.scatter([], [], s=140, facecolors="none", edgecolors="tab:red", label="enqueued point")
    ax.set(xlabel="trial", ylabel="validation dB over PCA", title="The search, trial by trial, against PCA")
    fig.legend(loc="outside right upper", fontsize=8)
    return save(fig, path)
