"""`runs/<study>/report/colorization.md`: the colorize-best table, grid and measured shortcomings (Markdown only)."""

from __future__ import annotations

from typing import Any

from cae.colorize.scoring import COLLAPSED
from cae.colorize.variants import DESCRIPTIONS, MAX_LEARNING_RATE, dense
from cae.config import ExperimentConfig
from cae.data import CLASSES

# Thresholds below which a finding is not stated (each sentence rests on its measured figure).
DESATURATED = 0.7  # colourfulness ratio (prediction / truth) under which predictions are called grey
UNEVEN = 1.2  # worst / best class MSE from which "classes differ" is said
CHEAP_GAIN_DB = 0.25  # a chroma gain costing less PSNR than this boosted mostly right hues
LOSSLESS_LUMA_DB = 45.0  # luma reproduced at least this well has lost no detail worth a sentence


def render(
    study: str,
    lineage: dict[str, Any],
    base: ExperimentConfig,
    data: dict[str, Any],
    results: dict[str, dict[str, Any]],
    baseline_rows: dict[str, dict[str, float]],
    command: str,
) -> str:
    """The Markdown of ``runs/<study>/report/colorization.md``: table, grid link, measured shortcomings.

    ``data``: ``data_source``, ``sizes`` (train, val, test), ``seed``, ``machine``; ``results`` per
    variant: the scores of :func:`cae.colorize.from_best.evaluate_variant`, ``run_id``, ``config``, times.
    """
    n_train, n_val, n_test = data["sizes"]
    any_config = next(iter(results.values()))["config"]
    total_minutes = sum(r["seconds"] for r in results.values()) / 60
    per_epoch = ", ".join(f"`{v}` {r['seconds_per_epoch']:.0f} s/epoch" for v, r in results.items())
    source = (
        f"trial {lineage['source_trial']} of study `{lineage['source_study']}` (MLflow run "
        f"`{lineage['source_run_id']}`)"
        + (
            f", its best conv trial (the best, trial {lineage['source_best_trial']}, has a dense code)"
            if "source_best_trial" in lineage
            else ""
        )
        if "source_trial" in lineage
        else f"`{lineage.get('source_config')}`"
    )
    lines = [
        f"# Colorization: `{study}`",
        "",
        f"Architecture from {source}: {_architecture(base)}, learning rate {base.train.learning_rate:.3g}"
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
    lines += [
        "",
        "![colorization grid](colorization.png)",
        "",
        "## Per-class test MSE",
        "",
        "| class | " + " | ".join(f"`{v}`" for v in results) + " |",
        "|---|" + "---|" * len(results),
    ]
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
                f"`{v}` collapsed to one colour for every pixel (colourfulness {r['test_colourfulness']:.2f}) at "
                f"learning rate {r['config'].train.learning_rate:.3g}; a lower rate "
                "(`--set train.learning_rate=1e-3`) or batch normalisation is the first thing to try."
            )
    for v, r in results.items():
        curve = r.get("train_loss") or []  # a row built by hand may carry no curve
        if len(curve) > 1 and curve[-1] > curve[0]:
            out.append(
                f"`{v}` diverged: its training loss rose from {curve[0]:.3g} to {curve[-1]:.3g} over {len(curve)} "
                f"epochs at learning rate {r['config'].train.learning_rate:.3g}, so its scores are those of a failed "
                "fit, not of its recipe; a lower rate (`--set train.learning_rate=`) is the first thing to try."
            )
    ratios = {v: r["test_colourfulness"] for v, r in results.items()}
    dull = [f"`{v}` {c:.2f}" for v, c in ratios.items()]
    if min(ratios.values()) < DESATURATED:  # a claim about greyness only where a model is grey
        out.append(
            f"Desaturated predictions (colourfulness ratios {', '.join(dull)}; 1.0 would match the truth): MSE "
            "rewards the average of every colour a gray patch could be."
        )
    else:
        out.append(f"No model is desaturated (colourfulness ratios {', '.join(dull)}, all ≥ {DESATURATED:g}).")
    return out


def _between_variants(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    if "rgb" in results and results["rgb"]["luma_psnr"] < LOSSLESS_LUMA_DB:
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
    spread = pc[ref][ranked[-1]] / pc[ref][ranked[0]] if pc[ref][ranked[0]] > 0 else float("inf")
    figures = lambda names: ", ".join(f"{n} ({pc[ref][n]:.4f})" for n in names)  # noqa: E731
    if spread >= UNEVEN:
        out.append(
            f"Classes differ ({ref}, test MSE): lowest on {figures(ranked[:3])}, highest on "
            f"{figures(ranked[-3:])}: {spread:.1f}× from best to worst."
        )
    else:
        out.append(f"Errors are even across classes ({ref}): {spread:.2f}× from {ranked[0]} to {ranked[-1]}.")
    for v, r in results.items():
        if "vivid" in r:
            g = r["vivid"]
            cost = g["test_psnr"] - r["test_psnr"]
            # What the gain shows depends on its cost: boosting right hues costs little, wrong ones a lot.
            meaning = (
                "the hues it predicts are mostly right, only too faint"
                if cost > -CHEAP_GAIN_DB
                else "the hues it predicts are wrong often enough that saturating them costs PSNR"
            )
            out.append(
                f"`{v}`: a chroma gain ×{g['gain']:.2f} (set on validation) lifts colourfulness "
                f"{r['test_colourfulness']:.2f} → {g['test_colourfulness']:.2f} for {cost:+.2f} dB PSNR: "
                f"{meaning}."
            )
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
    for variant, what in (
        ("chroma-semantic", "A global semantic branch with a class loss"),
        ("chroma-oracle", "Given the true class (the oracle: the most knowing the object can buy)"),
    ):
        if variant in results and "chroma" in results:
            a, b = results[variant], results["chroma"]
            cf = f"{b['test_colourfulness']:.2f} → {a['test_colourfulness']:.2f}"
            gain = a["test_psnr"] - b["test_psnr"]
            out.append(f"{what}: {gain:+.2f} dB and colourfulness {cf} against plain `chroma`.")
    if "chroma-skips" in results and "chroma" in results:
        a, b = results["chroma-skips"], results["chroma"]
        out.append(
            f"Skip connections around the bottleneck: {a['test_psnr'] - b['test_psnr']:+.2f} dB and "
            f"colourfulness {b['test_colourfulness']:.2f} → {a['test_colourfulness']:.2f} against plain `chroma`."
        )
    return out


def _what_would_help(results: dict[str, dict[str, Any]]) -> str:
    # Only what this run compared: each item names the variants whose rows above measure it.
    tried = ["predicting chroma around the given luma (`chroma` vs `rgb`)"] if {"chroma", "rgb"} <= set(results) else []
    tried += ["warm-starting the encoder"] if "chroma-warm" in results else []
    tried += ["skip connections (`chroma-skips`)"] if "chroma-skips" in results else []
    tried += ["a semantic branch with a class loss (`chroma-semantic`)"] if "chroma-semantic" in results else []
    tried += ["the true class as an input (`chroma-oracle`, a bound)"] if "chroma-oracle" in results else []
    return (
        "What would help: a classification loss over quantised chroma (multimodal colours instead of their "
        "mean), skip connections around the bottleneck (detail), knowing the object (`model.semantic` with "
        f"`train.class_weight`: a class head on global features). Tried here, with the numbers above: "
        f"{'; '.join(tried) or 'none of these'}. `make colorize-search` searches these and reports the trade-off."
    )


def _architecture(base: ExperimentConfig) -> str:
    m = base.model
    if dense(base):  # the default study's hybrid: its convolutions and refinement kept, the code learned from gray
        return (
            f"{m.encode_layers} convolution layer(s) before a dense code of {m.code_values()} values learned "
            f"from gray (PCA's basis is RGB's), {m.refine_layers} refinement layer(s) of "
            f"{m.refine_width} filters after it"
        )
    return f"depth {m.depth}, filters {'-'.join(map(str, m.level_filters()))}, latent {m.latent_filters} channels"
