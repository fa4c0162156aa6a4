"""`reports/<study>/colorization.md`: the colorize-best table, grid and measured shortcomings (Markdown only)."""

from __future__ import annotations

from typing import Any

from cae.colorize.scoring import COLLAPSED
from cae.colorize.variants import DESCRIPTIONS, MAX_LEARNING_RATE
from cae.config import ExperimentConfig
from cae.data import CLASSES


def render(
    study: str, lineage: dict[str, Any], base: ExperimentConfig, data: dict[str, Any],
    results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]], command: str,
) -> str:  # fmt: skip
    """The Markdown of ``reports/<study>/colorization.md``: table, grid link, measured shortcomings.

    ``data``: ``data_source``, ``sizes`` (train, val, test), ``seed``, ``machine``; ``results`` per
    variant: the scores of :func:`cae.colorize.best.evaluate_variant`, ``run_id``, ``config``, times.
    """
    n_train, n_val, n_test = data["sizes"]
    any_config = next(iter(results.values()))["config"]
    total_minutes = sum(r["seconds"] for r in results.values()) / 60
    per_epoch = ", ".join(f"`{v}` {r['seconds_per_epoch']:.0f} s/epoch" for v, r in results.items())
    source = (
        f"trial {lineage['source_trial']} of study `{lineage['source_study']}` (MLflow run "
        f"`{lineage['source_run_id']}`)"
        if "source_trial" in lineage
        else f"`{lineage.get('source_config')}`"
    )
    lines = [
        f"# Colorization: `{study}`",
        "",
        f"Architecture from {source}: depth {base.model.depth}, "
        f"filters {'-'.join(map(str, base.model.level_filters()))}, "
        f"latent {base.model.latent_filters} channels, learning rate {base.train.learning_rate:.3g}"
        + (
            f" (the search's {lineage['searched_learning_rate']:.3g} capped at {MAX_LEARNING_RATE:g}: "
            "higher rates killed the chroma head; `--set train.learning_rate=` overrides)"
            if "searched_learning_rate" in lineage
            else ""
        )
        + f", batch size "
        f"{base.train.batch_size}. Input: 1 channel (BT.601 luma; the channel mean for `seed`); output: RGB. "
        f"Data `{data['data_source']}`, split {n_train:,}/{n_val:,}/{n_test:,} (seed {data['seed']}), "
        f"{any_config.train.epochs} epochs; every figure is on the {n_test:,}-image test split. Hardware: "
        f"{data['machine']}; training time {total_minutes:.1f} min ({per_epoch}). Command: `{command}`.",
        "",
        *_table(results, baseline_rows),
    ]
    lines += ["", "![colorization grid](colorization.png)", "", "## Per-class test MSE", "",
              "| class | " + " | ".join(f"`{v}`" for v in results) + " |",
              "|---|" + "---|" * len(results)]  # fmt: skip
    for c in CLASSES:
        if all(c in r["per_class_mse"] for r in results.values()):
            lines.append(f"| {c} | " + " | ".join(f"{r['per_class_mse'][c]:.5f}" for r in results.values()) + " |")
    lines += ["", "## Shortcomings, measured", ""] + [f"- {s}" for s in shortcomings(results, baseline_rows)]
    return "\n".join(lines) + "\n"


def _table(results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| model | test MSE | PSNR (dB) | SSIM | colourfulness (pred/true chroma std) | luma PSNR (dB) | MLflow run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in baseline_rows.items():
        lines.append(
            f"| baseline: {name} (no learning) | {r['test_mse']:.6f} | {r['test_psnr']:.2f} | "
            f"{r['test_ssim']:.4f} | {r['test_colourfulness']:.2f} | exact | — |"
        )
    for v, r in results.items():
        lines.append(
            f"| `{v}`: {DESCRIPTIONS[v]} | {r['test_mse']:.6f} | {r['test_psnr']:.2f} | {r['test_ssim']:.4f} | "
            f"{r['test_colourfulness']:.2f} | {r['luma_psnr']:.2f} | `{r['run_id']}` |"
        )
        if "vivid" in r:
            g = r["vivid"]
            lines.append(
                f"| `{v}` with chroma gain ×{g['gain']:.2f} (set on validation) | {g['test_mse']:.6f} | "
                f"{g['test_psnr']:.2f} | {g['test_ssim']:.4f} | {g['test_colourfulness']:.2f} | "
                f"{r['luma_psnr']:.2f} | `{r['run_id']}` |"
            )
    return lines


def shortcomings(results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]]) -> list[str]:
    """Claims about the network's weaknesses, each backed by a number from this run."""
    return [*_against_baselines(results, baseline_rows), *_between_variants(results), _what_would_help(results)]


def _against_baselines(results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]]) -> list[str]:
    gray = baseline_rows["gray copied to RGB"]["test_psnr"]
    mean_chroma = baseline_rows["gray + mean training chroma"]["test_psnr"]
    best_baseline = max(gray, mean_chroma)
    out = []
    for v, r in results.items():
        verdict = "beats" if r["test_psnr"] > best_baseline else "does NOT beat"
        out.append(
            f"`{v}` {verdict} the best no-learning baseline ({r['test_psnr']:.2f} vs {best_baseline:.2f} dB, "
            f"{r['test_psnr'] - best_baseline:+.2f} dB)."
        )
    for v, r in results.items():
        if r["test_colourfulness"] < COLLAPSED:
            out.append(
                f"`{v}` collapsed to one colour for every pixel (colourfulness {r['test_colourfulness']:.2f}): "
                "its units "
                f"died early in training at learning rate {r['config'].train.learning_rate:.3g}; a lower rate "
                "(`--set train.learning_rate=1e-3`) or batch normalisation avoids it."
            )
    dull = [f"`{v}` {r['test_colourfulness']:.2f}" for v, r in results.items()]
    out.append(
        "Regression to the mean: MSE rewards the average colour of everything a gray patch could be, so the "
        f"predictions are desaturated (colourfulness ratios {', '.join(dull)}; 1.0 would match the truth). "
        "Brownish/sepia tones are that average."
    )
    return out


def _between_variants(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    if "rgb" in results:
        r = results["rgb"]
        out.append(
            f"The bottleneck loses detail the input already had: predicting RGB, the network reproduces the "
            f"*given* luma only to {r['luma_psnr']:.2f} dB PSNR; the `chroma` variant keeps luma exactly"
            + (
                f" and scores {results['chroma']['test_psnr'] - r['test_psnr']:+.2f} dB against `rgb`."
                if "chroma" in results
                else "."
            )
        )
    pc = {v: r["per_class_mse"] for v, r in results.items()}
    ref = "chroma" if "chroma" in pc else next(iter(pc))
    ranked = sorted(pc[ref], key=pc[ref].get)
    out.append(
        f"Classes differ ({ref}): lowest error on {', '.join(ranked[:3])} (consistent colours: sky, sea, "
        f"foliage); highest on {', '.join(ranked[-3:])} (objects whose paint or fur could be any colour)."
    )
    for v, r in results.items():
        if "vivid" in r:
            g = r["vivid"]
            cost = g["test_psnr"] - r["test_psnr"]
            out.append(f"`{v}`: a chroma gain ×{g['gain']:.2f} (set on validation) lifts colourfulness "
                       f"{r['test_colourfulness']:.2f} → {g['test_colourfulness']:.2f} for {cost:+.2f} dB PSNR: "
                       "much of the greyness is the averaging of MSE, not a wrong hue.")  # fmt: skip
    if "seed" in results:
        out.append(
            f"The seed's recipe (mean-gray input, BCE) scores {results['seed']['test_psnr']:.2f} dB and "
            f"colourfulness {results['seed']['test_colourfulness']:.2f} under the same metrics."
        )
    if "chroma-warm" in results and "chroma" in results:
        d = results["chroma-warm"]["test_psnr"] - results["chroma"]["test_psnr"]
        out.append(
            f"Warm-starting from the reconstruction weights changes PSNR by {d:+.2f} dB against training from scratch."
        )
    if "chroma-skips" in results and "chroma" in results:
        a, b = results["chroma-skips"], results["chroma"]
        out.append(
            f"Skip connections around the bottleneck: {a['test_psnr'] - b['test_psnr']:+.2f} dB and "
            f"colourfulness {b['test_colourfulness']:.2f} → {a['test_colourfulness']:.2f} against plain `chroma`."
        )
    return out


def _what_would_help(results: dict[str, dict[str, Any]]) -> str:
    tried = ["predicting chroma around the given luma (`chroma` vs `rgb`)"]
    tried += ["warm-starting the encoder"] if "chroma-warm" in results else []
    tried += ["skip connections (`chroma-skips`)"] if "chroma-skips" in results else []
    return (
        "What would help: a classification loss over quantised chroma (multimodal colours instead of their "
        "mean), skip connections around the bottleneck (detail), a larger receptive field or a pretrained "
        f"encoder (semantics). Tried here, with the numbers above: {'; '.join(tried)}. `make colorize-search` "
        "searches these (chroma classes with rebalancing, skips, width, depth) and reports the trade-off."
    )
