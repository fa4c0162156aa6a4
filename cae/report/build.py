"""`cae report`: ``reports/<study>/search.md``, a search written up for a supervisor.

Study summary, best parameters, the reference and the best trial retrained at the same epoch
budget and scored on the test split (with the no-learning thumbnail codec at equal code size and
the latent quantised to 8 bits), the loss-curve comparison, reconstruction grids, what mattered
(importances, size vs error with rank correlations) and the rate–distortion picture. "Best" and
the Pareto front are chosen on validation; the test split scores the chosen points only.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cae.codec import BaselinePoint, baseline_curve, baseline_psnr_at, quantized_metrics
from cae.config import ExperimentConfig, SearchConfig
from cae.data import CLASSES, Splits, load_splits, to_unit
from cae.errors import CAEError
from cae.hardware import machine
from cae.metrics import psnr_from_mse
from cae.paths import ensure_dir, reports_dir, study_dir, write_text_atomic
from cae.schema import flatten, from_dict, to_dict, with_overrides
from cae.tracking import Run, Tracker


@dataclass
class Point:
    trial: int
    code_values: int
    n_params: int
    val_loss: float
    params: dict[str, Any]

    @property
    def val_psnr(self) -> float:
        return psnr_from_mse(self.val_loss)


def completed_points(study: Any) -> list[Point]:
    return [
        Point(t.number, int(t.user_attrs["code_values"]), int(t.user_attrs["n_params"]), float(t.values[0]), t.params)
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and "code_values" in t.user_attrs
    ]


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both code size and validation MSE, smallest code first."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.code_values, p.val_loss)):
        if not front or p.val_loss < front[-1].val_loss:
            front.append(p)
    return front


def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2:
        return float("nan"), float("nan")
    r = spearmanr(x, y)
    return float(r.statistic), float(r.pvalue)


# --------------------------------------------------------------------------------------------
# Retraining the reference and the best trial at the same budget (cached per config)


def retrain(config: ExperimentConfig, label: str, study: str, splits: Splits, tracker: Tracker) -> dict[str, Any]:
    """Train ``config`` once (a tracked run in the study's experiment); reuse it on later reports."""
    import keras

    from cae.experiment import run_experiment

    cache = ensure_dir(study_dir(study) / "report")
    key = hashlib.sha256(json.dumps([to_dict(config), splits.digest], sort_keys=True).encode()).hexdigest()[:10]
    record_path, model_path = cache / f"{label}-{key}.json", cache / f"{label}-{key}.keras"
    if record_path.exists() and model_path.exists():
        record = json.loads(record_path.read_text())
        record["model"] = keras.models.load_model(model_path, compile=False)
        return record
    print(f"retraining {label} for {config.train.epochs} epochs on {splits.sizes[0]:,} images ...", flush=True)
    run_id, result, out = run_experiment(
        config, tracker, experiment=study, run_name=f"{label} (report retrain)", splits=splits,
        tags={"cae.role": "retrain", "study": study, "label": label},
    )  # fmt: skip
    record = {
        "label": label, "run_id": run_id, "epochs": result.epochs_run, "n_params": result.n_params,
        "latent_values": result.latent_values, "bottleneck_values": result.bottleneck_values,
        "code_values": result.code_values, "seconds_per_epoch": result.seconds_per_epoch,
        "best_val_loss": result.best_val_loss, **result.test,
        **quantized_metrics(result.model, splits, config.data.input),
        "config": to_dict(config), "loss_curve": str(out / "loss_curve.png"),
    }  # fmt: skip
    result.model.save(model_path)
    write_text_atomic(record_path, json.dumps(record, indent=2))
    record["model"] = result.model
    return record


# --------------------------------------------------------------------------------------------
# Figures


def _plain_log_ticks(axis: Any) -> None:
    """1,024 rather than 10^3 on a log axis: code sizes and parameter counts are read as numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def plain(v: float, _: Any) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:g}"

    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(plain))


def plot_size_vs_error(points: list[Point], path: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    from cae.plots import plt, save

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    codes = [p.code_values for p in points]
    sizes = [p.n_params for p in points]
    errs = [p.val_loss for p in points]
    rho_code, rho_params = spearman(codes, errs), spearman(sizes, errs)
    panels = ((axes[0], codes, "code size (values at the narrowest layer)", rho_code, "linear"),
              (axes[1], sizes, "parameters", rho_params, "log"))  # fmt: skip
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
    save(fig, path)
    return rho_code, rho_params


def plot_rate_distortion(points: list[Point], front: list[Point], curve: list[BaselinePoint], path: Path,
                         scored: list[tuple[str, int, float]]) -> Path:  # fmt: skip
    from cae.plots import plt, save

    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.plot(
        [c.values for c in curve],
        [c.psnr for c in curve],
        "-",
        color="gray",
        lw=2,
        label="bicubic thumbnail s×s → 32×32 (no learning)",
    )
    for c in curve[::3]:
        ax.annotate(
            f"{c.side}²", (c.values, c.psnr), fontsize=7, color="gray", xytext=(0, -11), textcoords="offset points"
        )
    ax.scatter([p.code_values for p in points], [p.val_psnr for p in points], alpha=0.55, label="completed trials")
    ax.plot([p.code_values for p in front], [p.val_psnr for p in front], "o-", color="tab:red", label="Pareto front")
    for label, values, psnr in scored:
        ax.plot(values, psnr, "*", ms=14, label=f"{label} (retrained, test split)")
    ax.set(
        xscale="log",
        xlabel="code size (values: the narrower of latent and bottleneck)",
        ylabel="PSNR (dB; validation unless marked)",
        title="Rate–distortion: autoencoders vs a thumbnail codec",
    )
    _plain_log_ticks(ax.xaxis)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def reconstruction_grid(splits: Splits, models: list[tuple[str, Any]], path: Path, title: str) -> Path:
    from cae.experiment import grid_indices
    from cae.plots import image_grid
    from cae.train import predict

    idx = grid_indices(splits.y_test)
    rows = [("original", to_unit(splits.x_test[idx]))]
    rows += [(label, predict(model, splits.x_test[idx])) for label, model in models]
    return image_grid(rows, path, title, [CLASSES[c] for c in splits.y_test[idx]])


# --------------------------------------------------------------------------------------------
# Importances in one sentence each


def importance_sentences(study: Any, points: list[Point]) -> list[str]:
    from cae.search.study import importances as param_importances

    if len(points) < 2:
        return ["(importances need at least two completed trials)"]
    importances = param_importances(study)
    sentences = []
    for name, share in importances.items():
        values = [p.params.get(name) for p in points]
        errs = [p.val_loss for p in points]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            rho, _ = spearman([float(v) for v in values], errs)
            trend = (
                "too few distinct values to tell"
                if not math.isfinite(rho)
                else "higher values went with lower error"
                if rho < -0.3
                else "higher values went with higher error"
                if rho > 0.3
                else "no monotonic trend"
            )
            detail = trend + (f" (Spearman ρ = {rho:.2f})" if math.isfinite(rho) else "")
        else:
            by = {}
            for v, e in zip(values, errs, strict=True):
                by.setdefault(str(v), []).append(e)
            means = sorted((float(np.mean(es)), k, len(es)) for k, es in by.items())
            detail = "mean val MSE by choice: " + ", ".join(f"{k} {m:.5f} (n={n})" for m, k, n in means)
        sentences.append(f"`{name}` accounts for {share:.0%} of the explained variance in validation MSE; {detail}.")
    return sentences


# --------------------------------------------------------------------------------------------
# The report


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


FRONT_MARGIN_DB = 3.0  # the project's bar: every front point beats the thumbnail of its size by this much


def front_verdict(margins: dict[int, float], bar: float = FRONT_MARGIN_DB) -> str:
    """One sentence on whether every front point clears the thumbnail by ``bar`` dB, naming the misses."""
    if not margins:
        return "No front point has a code size inside the thumbnail curve's range, so no margin is measured."
    misses = {t: m for t, m in margins.items() if m < bar}
    if not misses:
        return (
            f"Every front point beats the thumbnail of equal size by at least {bar:g} dB "
            f"(smallest margin {min(margins.values()):+.2f} dB)."
        )
    named = ", ".join(f"trial {t} ({m:+.2f} dB, {bar - m:.2f} dB short)" for t, m in sorted(misses.items()))
    return (
        f"Target missed: {len(misses)} of {len(margins)} front points beat the thumbnail of equal size by less "
        f"than {bar:g} dB: {named}."
    )


def build_report(
    cfg: SearchConfig, *, epochs: int | None = None, data: dict[str, Any] | None = None, tracker: Tracker | None = None
) -> Path:
    """Write ``reports/<study>/search.md`` (+ images) and log them to the study's parent run.

    The reference and the best trial are retrained for ``epochs`` (default: the search's) on the
    study's data, or on ``data`` overrides (``data.source``, ``data.subset``, ``seed``): a search
    run on a subset can be retrained on the full split.
    """
    from cae.compare import compare
    from cae.search.best import read_best
    from cae.search.figures import save_optuna_plots
    from cae.search.study import load_existing_study, state_counts
    from cae.urls import shown

    tracker = tracker or Tracker()
    study = load_existing_study(cfg)
    trials = study.get_trials(deepcopy=False)
    states = state_counts(study)
    points = completed_points(study)
    if not points:
        raise CAEError(
            f"study {cfg.study!r} has no completed trial "
            f"({', '.join(f'{n} {s}' for s, n in sorted(states.items())) or 'no trials'}): "
            "nothing to report; run more trials with `make search`"
        )
    best = read_best(cfg.study)
    searched = from_dict(ExperimentConfig, best["config"], "best.json")
    budget = epochs or searched.train.epochs
    common = {"train.epochs": budget, **(data or {})}
    best_config = with_overrides(searched, common)
    reference_trial = next((t for t in trials if t.user_attrs.get("reference")), None)
    # The reference: its trial's parameters (or the defaults) on everything else the study used.
    reference_point = (
        reference_trial.params if reference_trial else {k: flatten(ExperimentConfig())[k] for k in best["params"]}
    )
    reference_config = with_overrides(searched, {**reference_point, **common})
    out = ensure_dir(reports_dir() / cfg.study)
    splits = load_splits(best_config.data.source, best_config.seed, best_config.data.subset)
    parent_id = tracker.find_study_parent(cfg.study)

    ref = retrain(reference_config, "reference", cfg.study, splits, tracker)
    if to_dict(best_config) == to_dict(reference_config):  # the reference itself won
        top = {**ref, "label": f"best-trial-{best['trial_number']} (= reference)"}
    else:
        top = retrain(best_config, f"best-trial-{best['trial_number']}", cfg.study, splits, tracker)

    test_curve = baseline_curve(splits.x_test)
    val_curve = baseline_curve(splits.x_val)
    front = pareto_front(points)

    images: dict[str, str] = {}
    try:
        _, png, _ = compare([cfg.study], top=5, tracker=tracker, out_dir=out)
        images["compare"] = png.name
    except CAEError as err:
        print(f"note: no comparison plot ({err})")
    for p in save_optuna_plots(study, study_dir(cfg.study) / "plots", list(cfg.objectives)):
        if p.stem in ("param_importances", "optimization_history", "pareto_front"):
            shutil.copy(p, out / p.name)
            images[p.stem] = p.name
    reconstruction_grid(splits, [(f"reference\n{ref['test_psnr']:.1f} dB", ref["model"]),
                                 (f"best #{best['trial_number']}\n{top['test_psnr']:.1f} dB", top["model"])],
                        out / "reconstructions.png", f"{cfg.study}: test images, {budget}-epoch retrains")  # fmt: skip
    images["reconstructions"] = "reconstructions.png"
    rho_code, rho_params = plot_size_vs_error(points, out / "size_vs_error.png")
    images["size_vs_error"] = "size_vs_error.png"
    scored = [(r["label"], r["code_values"], r["test_psnr"]) for r in (ref, top)]
    plot_rate_distortion(points, front, val_curve, out / "rate_distortion.png", scored)
    images["rate_distortion"] = "rate_distortion.png"

    def thumb(curve: list[BaselinePoint], values: int) -> str:
        try:
            return f"{baseline_psnr_at(values, curve):.2f}"
        except ValueError:
            return "n/a"

    n_train, n_val, n_test = splits.sizes
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    ended = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)
    wall = (ended - started).total_seconds() if started and ended else float("nan")
    trial_hours = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                      if t.datetime_complete and t.datetime_start)  # fmt: skip
    lines = [
        f"# Search report: `{cfg.study}`",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `make report STUDY={cfg.study}"
        f"{f' EPOCHS={epochs}' if epochs else ''}` on {machine()}. Data: `{splits.data_source}` "
        f"({splits.location}), split {n_train:,}/{n_val:,}/{n_test:,} (seed {splits.seed}). "
        f"MLflow parent run `{parent_id}` (experiment `{cfg.study}`); "
        f"Optuna storage `{shown(cfg.storage or 'runs/optuna.db')}`.",
        "",
        "## Study",
        "",
        f"- Trials: {len(trials)} ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); "
        f"objectives {list(study.user_attrs.get('objectives', ['best_val_loss']))}; "
        f"{best['config']['train']['epochs']} epochs per trial at most.",
        f"- Wall time: {_duration(wall)} from first start to last finish ({_duration(trial_hours)} of trial time).",
        f"- Search space: `{study.user_attrs.get('space', cfg.space)}`.",
        "",
        f"## Best trial: #{best['trial_number']} (validation MSE {best['best_val_loss']:.6f}, "
        f"MLflow run `{best['mlflow_run_id']}`)",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| `{k}` | {_fmt(v)} |" for k, v in best["params"].items()],
        f"| parameters | {best['n_params']:,} |",
        f"| code (latent / narrowest) | {best['latent_values']:,} / {best['bottleneck_values']:,} values |",
        "",
        f"## Reference vs best, both retrained for {budget} epochs, scored on the test split",
        "",
        "| model | params | code: narrowest / latent (values) | test MSE | PSNR (dB) | SSIM "
        "| thumbnail at narrowest (dB) | margin (dB) | PSNR, latent as 8-bit | thumbnail at latent bytes (dB) "
        "| s/epoch | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (ref, top):
        base, base_q = thumb(test_curve, r["code_values"]), thumb(test_curve, r["latent_values"])
        margin = f"{r['test_psnr'] - float(base):+.2f}" if base != "n/a" else "n/a"
        lines.append(
            f"| {r['label']} | {r['n_params']:,} | {r['code_values']:,} / {r['latent_values']:,} | "
            f"{r['test_mse']:.6f} | {r['test_psnr']:.2f} | {r['test_ssim']:.4f} | {base} | {margin} | "
            f"{r['test_q8_psnr']:.2f} | {base_q} | {r['seconds_per_epoch']:.1f} | `{r['run_id']}` |"
        )
    gain = top["test_psnr"] - ref["test_psnr"]
    lines += [
        "",
        f"The best trial's architecture is {gain:+.2f} dB against the reference at the same budget "
        f"({ref['test_mse'] / top['test_mse']:.2f}× lower test MSE). Thumbnail columns: the no-learning codec "
        "(PIL bicubic down to s×s and back up, uint8) with as many values as the model's narrowest layer, and with "
        "as many bytes as its latent stored as 8-bit integers (per-channel range from the training split); "
        "both interpolated linearly in values between squares.",
        "",
        "![reconstructions](reconstructions.png)",
        "",
    ]
    if "compare" in images:
        lines += ["## Loss curves of the five best trials", "",
                  "Validation solid, train dashed; read from MLflow (`make compare STUDY=" + cfg.study + "`).", "",
                  "![compare](compare.png)", ""]  # fmt: skip
    lines += ["## What mattered", ""]
    lines += [f"- {s}" for s in importance_sentences(study, points)]
    if "param_importances" in images:
        lines += ["", "![importances](param_importances.png)"]
    verdict = lambda rho: ("too few trials to tell" if not math.isfinite(rho[0]) else  # noqa: E731
                           "no clear monotonic relation" if abs(rho[0]) < 0.3 else
                           ("a clear" if abs(rho[0]) >= 0.6 else "a moderate") +
                           (" negative" if rho[0] < 0 else " positive") + " rank correlation")  # fmt: skip
    lines += [
        "",
        "### Is there an obvious correlation between the size of the latent representation and the error?",
        "",
        f"Across {len(points)} completed trials: code size vs validation MSE has Spearman ρ = {rho_code[0]:.2f} "
        f"(p = {rho_code[1]:.2g}): {verdict(rho_code)}; parameter count vs validation MSE ρ = {rho_params[0]:.2f} "
        f"(p = {rho_params[1]:.2g}): {verdict(rho_params)}. "
        + (
            "This study caps the code size, so the spread in code size is narrow; the Pareto study "
            "(`make pareto`) varies it on purpose."
            if len(study.directions) == 1
            else ""
        ),
        "",
        "![size vs error](size_vs_error.png)",
        "",
        "## Rate–distortion",
        "",
        "Validation PSNR of every completed trial against its code size, the Pareto front (chosen on validation) "
        "and the bicubic-thumbnail codec on the same validation images; stars are the two retrained models on the "
        "test split.",
        "",
        "![rate-distortion](rate_distortion.png)",
        "",
        "| trial | code values | params | val MSE | val PSNR (dB) | thumbnail at equal size (dB) | margin (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    margins: dict[int, float] = {}
    for p in front:
        base = thumb(val_curve, p.code_values)
        if base != "n/a":
            margins[p.trial] = p.val_psnr - float(base)
        margin = f"{margins[p.trial]:+.2f}" if p.trial in margins else "n/a"
        lines.append(
            f"| {p.trial} | {p.code_values:,} | {p.n_params:,} | {p.val_loss:.6f} | {p.val_psnr:.2f} | "
            f"{base} | {margin} |"
        )
    lines += ["", front_verdict(margins)]
    if "pareto_front" in images:
        lines += ["", "![pareto front](pareto_front.png)"]
    colorization = out / "colorization.md"
    if colorization.exists():
        lines += ["", "## Colorization", "", "See [the colorization report](colorization.md)."]
    text = "\n".join(lines) + "\n"
    report = out / "search.md"
    write_text_atomic(report, text)
    if parent_id:
        run = Run(tracker, parent_id)
        run.log_artifact(report, "report")
        for name in images.values():
            run.log_artifact(out / name, "report")
    return report
