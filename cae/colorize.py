"""`cae colorize`: colour from grayscale, starting from a search's best architecture.

The best trial's architecture, learning rate and batch size (``runs/<study>/best.json``, or an
explicit experiment ``--config``) are rebuilt with a 1-channel BT.601 luma input and trained on
the same split. Variants (``--variant``):

- ``rgb``: predict R, G, B with MSE (the assignment's formulation);
- ``chroma``: keep the given luma, predict only U and V (BT.601), recombined to RGB in the model;
- ``seed``: the seed notebook's recipe as a comparison row: channel-mean gray input, sigmoid RGB
  output, binary cross-entropy;
- ``chroma-warm``: ``chroma`` with the encoder/decoder initialised from the best reconstruction
  weights (first convolution summed over its RGB inputs, which is exact for a gray image);
- ``chroma-skips``: ``chroma`` with U-Net skip connections, so detail need not pass the bottleneck;
- ``all``: rgb, chroma and seed.

Every variant is an MLflow run tagged ``stage=colorization`` with lineage tags back to the
reconstruction trial; ``reports/<study>/colorization.md`` compares them with two no-learning
baselines (gray copied to RGB; gray plus the training set's mean chroma).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cae.config import ExperimentConfig, SearchConfig, from_dict, load_experiment, with_overrides
from cae.data import CLASSES, Splits, load_splits, luma, to_unit
from cae.errors import CAEError
from cae.metrics import colourfulness_ratio, image_metrics, per_class_mse, psnr_from_mse
from cae.paths import ensure_dir, reports_dir, write_text_atomic
from cae.tracking import Run, Tracker, machine

VARIANTS: dict[str, dict[str, Any]] = {
    "rgb": {"data.input": "luma", "model.predict": "rgb", "train.loss": "mse"},
    "chroma": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse"},
    "seed": {"data.input": "mean", "model.predict": "rgb", "model.output_activation": "sigmoid", "train.loss": "bce"},
    "chroma-warm": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse"},
    "chroma-skips": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse", "model.skips": True},
}
ALL = ("rgb", "chroma", "seed")
# A rate tuned for reconstruction can be too high for colour: at the main study's 6.07e-3 the chroma
# head died within the first epoch (constant colour, colourfulness 0.01 on the full split), while
# 1e-3 trained. The cap applies unless the user sets train.learning_rate explicitly.
MAX_LEARNING_RATE = 1e-3
COLLAPSED = 0.05  # colourfulness below this: the network predicts one colour for every pixel
DESCRIPTIONS = {
    "rgb": "luma in, RGB out, MSE",
    "chroma": "luma in, U/V out (luma kept), MSE",
    "seed": "seed recipe: mean-gray in, sigmoid RGB, BCE",
    "chroma-warm": "chroma, warm-started from the reconstruction weights",
    "chroma-skips": "chroma with U-Net skip connections around the bottleneck",
}


def source_architecture(study: str | None, config_path: str | None) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, lineage) from a study's best.json, or from an explicit experiment file."""
    from cae.search import read_best

    if config_path:
        return load_experiment(config_path), {"source_config": config_path}
    try:
        record = read_best(study or SearchConfig().study)
    except CAEError as err:
        raise CAEError(f"{err}, or pass CONFIG=<experiment yaml> to colorize an explicit architecture") from None
    lineage = {"source_study": record["study"], "source_trial": record["trial_number"],
               "source_run_id": record["mlflow_run_id"]}  # fmt: skip
    return from_dict(ExperimentConfig, record["config"], f"runs/{record['study']}/best.json"), lineage


def variant_config(base: ExperimentConfig, variant: str, overrides: dict[str, Any]) -> ExperimentConfig:
    if variant not in VARIANTS:
        raise CAEError(f"unknown colorization variant {variant!r}; allowed: {', '.join(VARIANTS)}, all")
    return with_overrides(base, {**VARIANTS[variant], "name": f"colorize-{variant}", **overrides})


def warm_start(model: Any, source: Any) -> int:
    """Copy matching weights from a reconstruction model; returns how many layers were copied.

    The first convolution saw RGB; for a gray image (R = G = B = Y) its response equals a 1-channel
    kernel summed over the input channels, so that sum is the exact adaptation.
    """
    copied = 0
    names = {layer.name for layer in source.layers}
    for layer in model.layers:
        if layer.name not in names or not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        if layer.name == "enc0_conv0" and weights[0].shape[2] == 3 and layer.weights[0].shape[2] == 1:
            weights[0] = weights[0].sum(axis=2, keepdims=True)
        if [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied += 1
    return copied


def baselines(splits: Splits) -> dict[str, dict[str, float]]:
    """No-learning rows: gray copied into RGB; gray plus the training split's mean chroma."""
    import tensorflow as tf

    truth = to_unit(splits.x_test)
    gray = luma(truth)
    train_uv = tf.image.rgb_to_yuv(to_unit(splits.x_train[:10000])).numpy()[..., 1:].reshape(-1, 2).mean(axis=0)
    yuv = np.concatenate([gray, np.broadcast_to(train_uv, (*gray.shape[:-1], 2))], axis=-1)
    rows = {}
    for name, pred in (("gray copied to RGB", np.repeat(gray, 3, axis=-1)),
                       ("gray + mean training chroma", tf.image.yuv_to_rgb(yuv).numpy())):  # fmt: skip
        rows[name] = {**image_metrics(pred, truth), "colourfulness": colourfulness_ratio(np.clip(pred, 0, 1), truth)}
    return rows


def saturate(rgb: np.ndarray, gain: float) -> np.ndarray:
    """Scale the chroma (U, V) of RGB images by ``gain``, keeping their luma; clipped to [0, 1]."""
    import tensorflow as tf

    yuv = tf.image.rgb_to_yuv(rgb).numpy()
    yuv[..., 1:] *= gain
    return np.clip(tf.image.yuv_to_rgb(yuv).numpy(), 0.0, 1.0)


def calibrate_gain(pred: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The chroma gain that brings colourfulness to ``target`` on these (validation) images."""
    gain = target / max(colourfulness_ratio(pred, truth), 1e-6)
    # Clipping to [0, 1] eats a little of the gain: one correction step gets within ~1 %.
    return gain * target / max(colourfulness_ratio(saturate(pred, gain), truth), 1e-6)


def evaluate_variant(
    model: Any, config: ExperimentConfig, splits: Splits, vivid: float | None = None
) -> dict[str, Any]:
    """Test scores; with ``vivid``, also with a chroma gain set on validation to reach it.

    MSE regression predicts the conditional mean colour, whose spread is only the correlation
    between prediction and truth times the true spread; a gain trades a little MSE (flat near
    its optimum) for colours as vivid as asked. The gain is chosen on validation, never on test.
    """
    from cae.train import predict

    truth = to_unit(splits.x_test)
    pred = np.clip(predict(model, splits.x_test, config.data.input), 0, 1)
    pred_luma, true_luma = luma(pred), luma(truth)
    scores = {
        **image_metrics(pred, truth),
        "colourfulness": colourfulness_ratio(pred, truth),
        # How much of the error is brightness the network was given and lost (the bottleneck).
        "luma_psnr": psnr_from_mse(float(np.mean((pred_luma - true_luma) ** 2))),
        "per_class_mse": per_class_mse(pred, truth, splits.y_test),
    }
    # A collapsed network's chroma is noise around a constant; a gain would only amplify the noise.
    if vivid is not None and COLLAPSED <= scores["colourfulness"] < vivid:
        val_pred = np.clip(predict(model, splits.x_val, config.data.input), 0, 1)
        gain = calibrate_gain(val_pred, to_unit(splits.x_val), vivid)
        vivid_pred = saturate(pred, gain)
        scores["vivid"] = {"gain": gain, **image_metrics(vivid_pred, truth),
                           "colourfulness": colourfulness_ratio(vivid_pred, truth)}  # fmt: skip
    return scores


def colorize(
    study: str | None = None, *, config_path: str | None = None, variants: Sequence[str] = ALL,
    overrides: dict[str, Any] | None = None, tracker: Tracker | None = None, vivid: float | None = 0.7,
) -> Path:  # fmt: skip
    """Train the variants, score them against the baselines, write the report."""
    import keras

    from cae.experiment import run_experiment

    tracker = (tracker or Tracker()).check()
    base, lineage = source_architecture(study, config_path)
    if "train.learning_rate" not in (overrides or {}) and base.train.learning_rate > MAX_LEARNING_RATE:
        lineage["searched_learning_rate"] = base.train.learning_rate
        base = with_overrides(base, {"train.learning_rate": MAX_LEARNING_RATE})
    study_name = lineage.get("source_study", Path(config_path or "colorization").stem)
    configs = {v: variant_config(base, v, overrides or {}) for v in variants}
    first = next(iter(configs.values()))
    splits = load_splits(first.data.source, first.seed, first.data.subset)
    results: dict[str, dict[str, Any]] = {}
    for variant, config in configs.items():
        keras.backend.clear_session()
        model = None
        if variant == "chroma-warm":
            from cae.search import load_best_model
            from cae.train import build_model

            if "source_study" not in lineage:
                raise CAEError("chroma-warm needs a study's best.keras (STUDY=), not CONFIG=")
            model = build_model(config, splits)
            warm_start(model, load_best_model(lineage["source_study"])[0])
        run_id, result, out = run_experiment(
            config, tracker, experiment=study_name, run_name=f"colorize-{variant}", splits=splits, model=model,
            tags={"variant": variant, **{k: str(v) for k, v in lineage.items()}},
        )  # fmt: skip
        scores = evaluate_variant(result.model, config, splits, vivid)
        Run(tracker, run_id).log_metrics({k: v for k, v in scores.items() if isinstance(v, float)})
        if "vivid" in scores:
            Run(tracker, run_id).log_metrics({f"vivid_{k}": v for k, v in scores["vivid"].items()})
        Run(tracker, run_id).log_text(json.dumps(scores["per_class_mse"], indent=2), "per_class_mse.json")
        results[variant] = {
            **scores, "run_id": run_id, "n_params": result.n_params, "epochs": result.epochs_run,
            "seconds_per_epoch": result.seconds_per_epoch, "seconds": result.seconds, "model": result.model,
            "config": config, "loss_curve": out / "loss_curve.png",
        }  # fmt: skip
        print(
            f"{variant}: test PSNR {scores['test_psnr']:.2f} dB, colourfulness {scores['colourfulness']:.2f} "
            f"(MLflow run {run_id})",
            flush=True,
        )
    command = "make colorize-best " + " ".join(
        f"{k}={v}" for k, v in (
            ("STUDY", lineage.get("source_study")), ("CONFIG", config_path), ("VARIANT", ",".join(variants)),
            ("EPOCHS", first.train.epochs), ("SUBSET", first.data.subset), ("DATA", first.data.source),
            ("VIVID", vivid or 0),
        ) if v is not None
    )  # fmt: skip
    report = write_report(
        study_name, lineage, base, splits, results, baselines(splits), ensure_dir(reports_dir() / study_name), command
    )
    for r in results.values():
        Run(tracker, r["run_id"]).log_artifact(report, "report")
    return report


def write_report(
    study: str, lineage: dict[str, Any], base: ExperimentConfig, splits: Splits,
    results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]], out: Path, command: str,
) -> Path:  # fmt: skip
    """``reports/<study>/colorization.md``: the table, the grid, and measured shortcomings."""
    from cae.experiment import grid_indices
    from cae.plots import image_grid
    from cae.train import predict

    idx = grid_indices(splits.y_test)
    truth = to_unit(splits.x_test[idx])
    rows = [("gray input", luma(truth))]
    rows += [(v, predict(r["model"], splits.x_test[idx], r["config"].data.input)) for v, r in results.items()]
    rows.append(("truth", truth))
    image_grid(
        rows,
        out / "colorization.png",
        f"{study}: colorization on fixed test images",
        [CLASSES[c] for c in splits.y_test[idx]],
    )
    n_train, n_val, n_test = splits.sizes
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
        f"Data `{splits.data_source}`, split {n_train:,}/{n_val:,}/{n_test:,} (seed {splits.seed}), "
        f"{any_config.train.epochs} epochs; every figure is on the {n_test:,}-image test split. Hardware: "
        f"{machine()}; training time {total_minutes:.1f} min ({per_epoch}). Command: `{command}`.",
        "",
        "| model | test MSE | PSNR (dB) | SSIM | colourfulness (pred/true chroma std) | luma PSNR (dB) | MLflow run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in baseline_rows.items():
        lines.append(
            f"| baseline: {name} (no learning) | {r['test_mse']:.6f} | {r['test_psnr']:.2f} | "
            f"{r['test_ssim']:.4f} | {r['colourfulness']:.2f} | exact | — |"
        )
    for v, r in results.items():
        lines.append(
            f"| `{v}`: {DESCRIPTIONS[v]} | {r['test_mse']:.6f} | {r['test_psnr']:.2f} | {r['test_ssim']:.4f} | "
            f"{r['colourfulness']:.2f} | {r['luma_psnr']:.2f} | `{r['run_id']}` |"
        )
        if "vivid" in r:
            g = r["vivid"]
            lines.append(
                f"| `{v}` with chroma gain ×{g['gain']:.2f} (set on validation) | {g['test_mse']:.6f} | "
                f"{g['test_psnr']:.2f} | {g['test_ssim']:.4f} | {g['colourfulness']:.2f} | "
                f"{r['luma_psnr']:.2f} | `{r['run_id']}` |"
            )
    lines += ["", "![colorization grid](colorization.png)", "", "## Per-class test MSE", "",
              "| class | " + " | ".join(f"`{v}`" for v in results) + " |",
              "|---|" + "---|" * len(results)]  # fmt: skip
    for c in CLASSES:
        if all(c in r["per_class_mse"] for r in results.values()):
            lines.append(f"| {c} | " + " | ".join(f"{r['per_class_mse'][c]:.5f}" for r in results.values()) + " |")
    lines += ["", "## Shortcomings, measured", ""] + [f"- {s}" for s in shortcomings(results, baseline_rows)]
    report = out / "colorization.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report


def shortcomings(results: dict[str, dict[str, Any]], baseline_rows: dict[str, dict[str, float]]) -> list[str]:
    """Claims about the network's weaknesses, each backed by a number from this run."""
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
        if r["colourfulness"] < COLLAPSED:
            out.append(
                f"`{v}` collapsed to one colour for every pixel (colourfulness {r['colourfulness']:.2f}): its units "
                f"died early in training at learning rate {r['config'].train.learning_rate:.3g}; a lower rate "
                "(`--set train.learning_rate=1e-3`) or batch normalisation avoids it."
            )
    dull = [f"`{v}` {r['colourfulness']:.2f}" for v, r in results.items()]
    out.append(
        "Regression to the mean: MSE rewards the average colour of everything a gray patch could be, so the "
        f"predictions are desaturated (colourfulness ratios {', '.join(dull)}; 1.0 would match the truth). "
        "Brownish/sepia tones are that average."
    )
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
                       f"{r['colourfulness']:.2f} → {g['colourfulness']:.2f} for {cost:+.2f} dB PSNR: much of the "
                       "greyness is the averaging of MSE, not a wrong hue.")  # fmt: skip
    if "seed" in results:
        out.append(
            f"The seed's recipe (mean-gray input, BCE) scores {results['seed']['test_psnr']:.2f} dB and "
            f"colourfulness {results['seed']['colourfulness']:.2f} under the same metrics."
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
            f"colourfulness {b['colourfulness']:.2f} → {a['colourfulness']:.2f} against plain `chroma`."
        )
    tried = ["predicting chroma around the given luma (`chroma` vs `rgb`)"]
    tried += ["warm-starting the encoder"] if "chroma-warm" in results else []
    tried += ["skip connections (`chroma-skips`)"] if "chroma-skips" in results else []
    out.append(
        "What would help: a classification loss over quantised chroma (multimodal colours instead of their "
        "mean), skip connections around the bottleneck (detail), a larger receptive field or a pretrained "
        f"encoder (semantics). Tried here, with the numbers above: {'; '.join(tried)}."
    )
    return out
