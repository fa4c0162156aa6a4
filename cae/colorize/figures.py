"""The colorization study's figures: the PSNR–colourfulness front and a grid of test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cae.colorize.final import FinalModel
from cae.colorize.from_best import colorization_grid
from cae.colorize.search_render import GRAY_MARGIN_DB, VIVID_CF
from cae.data import Splits
from cae.plots import plt, save
from cae.search_config import SearchConfig


def front_figure(m: Any, path: Path) -> Path:
    """Validation PSNR against colourfulness for every trial; front, finals (test), baselines, aim."""
    aim = m.baselines["gray copied to RGB"]["test_psnr"] + GRAY_MARGIN_DB
    fig, ax = plt.subplots(figsize=(9, 5.5))
    done = [t for t in m.trials if t["val_psnr"] is not None]
    ax.scatter(
        [t["val_colourfulness"] for t in done], [t["val_psnr"] for t in done], alpha=0.5, label="trials (validation)"
    )
    for t in done:
        ax.annotate(
            str(t["number"]),
            (t["val_colourfulness"], t["val_psnr"]),
            fontsize=7,
            xytext=(3, 2),
            textcoords="offset points",
        )
    front = sorted((t for t in done if t["front"]), key=lambda t: t["val_colourfulness"])
    ax.plot(
        [t["val_colourfulness"] for t in front],
        [t["val_psnr"] for t in front],
        "-",
        color="tab:red",
        lw=1.2,
        label="Pareto front (validation)",
    )
    first = [t for t in done if t["first"]]
    ax.scatter(
        [t["val_colourfulness"] for t in first],
        [t["val_psnr"] for t in first],
        s=90,
        facecolors="none",
        edgecolors="k",
        label="today's recipe and the enqueued variants",
    )
    for f in m.finals:
        ax.plot(
            f.test["test_colourfulness"],
            f.test["test_psnr"],
            "*",
            ms=15,
            label=f"trial {f.trial} trained {f.epochs} epochs (test)",
        )
        if f.curve:
            ax.plot([c["colourfulness"] for c in f.curve], [c["psnr"] for c in f.curve], "--", lw=1, alpha=0.7)
    if m.oracle is not None:
        o = m.oracle
        ax.plot(
            o.test["test_colourfulness"],
            o.test["test_psnr"],
            "P",
            ms=11,
            color="tab:purple",
            label=f"oracle: trial {o.trial} given the true class (test; a bound)",
        )
    for name, b in m.baselines.items():
        ax.plot(b["test_colourfulness"], b["test_psnr"], "s", ms=8, label=f"baseline: {name} (test)")
    tested = [f.test for f in m.finals] + ([m.oracle.test] if m.oracle is not None else [])
    top = max([aim + 0.5] + [t["val_psnr"] for t in done] + [t["test_psnr"] for t in tested])
    right = max(
        [1.2] + [t["val_colourfulness"] + 0.05 for t in done] + [t["test_colourfulness"] + 0.05 for t in tested]
    )
    ax.fill_between(
        [VIVID_CF, right],
        aim,
        top,
        color="tab:green",
        alpha=0.12,
        label=f"the aim (≥ gray copy + {GRAY_MARGIN_DB:g} dB at colourfulness ≥ {VIVID_CF})",
    )
    ax.set(
        xlabel="colourfulness (predicted / true chroma spread; 1 = as colourful as the truth)",
        ylabel="PSNR (dB)",
        xlim=(-0.02, right),
        title=f"{m.study}: PSNR against colourfulness",
    )
    ax.grid(alpha=0.3)
    # Outside the axes: inside, "best" still covered the baselines' markers, which sit at the plot's edges.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)


def grid_figure(cfg: SearchConfig, finals: list[FinalModel], splits: Splits, path: Path) -> Path:
    """Fixed test images: gray input, each final model, truth."""
    models = [
        (f"trial {f.trial}\n{f.test['test_psnr']:.1f} dB, cf {f.test['test_colourfulness']:.2f}", f.model, f.config)
        for f in finals
    ]
    return colorization_grid(splits, models, path, f"{cfg.study}: the front's models on fixed test images")
