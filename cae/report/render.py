"""``search.md`` from a ``ReportData``: Markdown only, no study, no models, no files read.

Sections in order: header, study, best trial, reference vs best (test split), loss curves, what
mattered (fANOVA importances, size vs error), rate–distortion with the front table, colorization.
"""

from __future__ import annotations

import math
from typing import Any

from cae.report.data import FrontPoint, Importance, Rank, ReportData, Retrained
from cae.report.points import FRONT_MARGIN_DB, front_margins


def render(data: ReportData) -> str:
    lines = [
        *_header(data), *_study(data), *_best(data), *_retrained(data), *_curves(data), *_mattered(data),
        *_rate_distortion(data), *_colorization(data),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def _db(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _header(data: ReportData) -> list[str]:
    n_train, n_val, n_test = data.split
    return [
        f"# Search report: `{data.study}`",
        "",
        f"Generated {data.generated} by `{data.command}` on {data.machine}. "
        f"Data: `{data.data_source}` ({data.data_location}), split {n_train:,}/{n_val:,}/{n_test:,} "
        f"(seed {data.seed}). MLflow parent run `{data.parent_run_id}` (experiment `{data.study}`); "
        f"Optuna storage `{data.storage}`.",
        "",
    ]


def _study(data: ReportData) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in data.states.items())
    return [
        "## Study",
        "",
        f"- Trials: {data.n_trials} ({states}); objectives {data.objectives}; "
        f"{data.epochs_per_trial} epochs per trial at most.",
        f"- Wall time: {_duration(data.wall_seconds)} from first start to last finish "
        f"({_duration(data.trial_seconds)} of trial time).",
        f"- Search space: `{data.space}`.",
        "",
    ]


def _best(data: ReportData) -> list[str]:
    b = data.best
    return [
        f"## Best trial: #{b.number} (validation MSE {b.val_loss:.6f}, MLflow run `{b.run_id}`)",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| `{k}` | {_fmt(v)} |" for k, v in b.params.items()],
        f"| parameters | {b.n_params:,} |",
        f"| code (latent / narrowest) | {b.latent_values:,} / {b.bottleneck_values:,} values |",
        "",
    ]


def _retrained_row(r: Retrained) -> str:
    return (
        f"| {r.label} | {r.n_params:,} | {r.code_values:,} / {r.latent_values:,} | "
        f"{r.test_mse:.6f} | {r.test_psnr:.2f} | {r.test_ssim:.4f} | {_db(r.thumb_at_code)} | "
        f"{_db(r.margin, signed=True)} | {r.q8_psnr:.2f} | {_db(r.thumb_at_latent)} | "
        f"{r.seconds_per_epoch:.1f} | `{r.run_id}` |"
    )


def _retrained(data: ReportData) -> list[str]:
    ref, top = data.reference, data.top
    return [
        f"## Reference vs best, both retrained for {data.budget} epochs, scored on the test split",
        "",
        "| model | params | code: narrowest / latent (values) | test MSE | PSNR (dB) | SSIM "
        "| thumbnail at narrowest (dB) | margin (dB) | PSNR, latent as 8-bit | thumbnail at latent bytes (dB) "
        "| s/epoch | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        _retrained_row(ref),
        _retrained_row(top),
        "",
        f"The best trial's architecture is {top.test_psnr - ref.test_psnr:+.2f} dB against the reference at the same "
        f"budget ({ref.test_mse / top.test_mse:.2f}× lower test MSE). Thumbnail columns: the no-learning codec "
        "(PIL bicubic down to s×s and back up, uint8) with as many values as the model's narrowest layer, and with "
        "as many bytes as its latent stored as 8-bit integers (per-channel range from the training split); "
        "both interpolated linearly in values between squares.",
        "",
        "![reconstructions](reconstructions.png)",
        "",
    ]


def _curves(data: ReportData) -> list[str]:
    if "compare" not in data.images:
        return []
    return [
        "## Loss curves of the five best trials",
        "",
        f"Validation solid, train dashed; read from MLflow (`make compare STUDY={data.study}`).",
        "",
        f"![compare]({data.images['compare']})",
        "",
    ]


def importance_sentence(imp: Importance) -> str:
    """One parameter's fANOVA share (main effects, normalised over the parameters) and its direction."""
    if imp.by_choice is not None:
        detail = "mean val MSE by choice: " + ", ".join(f"{k} {m:.5f} (n={n})" for k, m, n in imp.by_choice)
    elif imp.rho is None or not math.isfinite(imp.rho):
        detail = "too few distinct values to tell"
    else:
        trend = (
            "higher values went with lower error" if imp.rho < -0.3
            else "higher values went with higher error" if imp.rho > 0.3
            else "no monotonic trend"
        )  # fmt: skip
        detail = f"{trend} (Spearman ρ = {imp.rho:.2f})"
    return (
        f"`{imp.name}`: {imp.share:.0%} share of the variance of validation MSE explained by single parameters "
        f"(fANOVA); {detail}."
    )


def rank_verdict(rho: Rank) -> str:
    r = rho[0]
    if not math.isfinite(r):
        return "too few trials to tell"
    if abs(r) < 0.3:
        return "no clear monotonic relation"
    strength = "a clear" if abs(r) >= 0.6 else "a moderate"
    return f"{strength} {'negative' if r < 0 else 'positive'} rank correlation"


def _mattered(data: ReportData) -> list[str]:
    if data.importances:
        sentences = [importance_sentence(i) for i in data.importances]
    elif data.n_completed < 2:
        sentences = ["(importances need at least two completed trials)"]
    else:
        sentences = ["(no importances: no searched parameter varied across the completed trials)"]
    lines = ["## What mattered", "", *[f"- {s}" for s in sentences]]
    if "param_importances" in data.images:
        lines += ["", f"![importances]({data.images['param_importances']})"]
    return [*lines, *_size_vs_error(data)]


def _size_vs_error(data: ReportData) -> list[str]:
    (rc, pc), (rp, pp) = data.rho_code, data.rho_params
    capped = (
        "This study caps the code size, so the spread in code size is narrow; the Pareto study "
        "(`make pareto`) varies it on purpose."
        if data.single_objective
        else ""
    )
    return [
        "",
        "### Is there an obvious correlation between the size of the latent representation and the error?",
        "",
        f"Across {data.n_completed} completed trials: code size vs validation MSE has Spearman ρ = {rc:.2f} "
        f"(p = {pc:.2g}): {rank_verdict(data.rho_code)}; parameter count vs validation MSE ρ = {rp:.2f} "
        f"(p = {pp:.2g}): {rank_verdict(data.rho_params)}. {capped}".rstrip(),
        "",
        "![size vs error](size_vs_error.png)",
        "",
    ]


def _front_row(p: FrontPoint, with_test: bool) -> str:
    test = f" {_db(p.test_psnr)} | {_db(p.test_thumb)} | {_db(p.test_margin, signed=True)} |" if with_test else ""
    return (
        f"| {p.trial} | {p.code_values:,} | {p.n_params:,} | {p.val_loss:.6f} | {p.val_psnr:.2f} | "
        f"{_db(p.thumb)} | {_db(p.margin, signed=True)} |{test}"
    )


def _rate_distortion(data: ReportData) -> list[str]:
    with_test = any(p.test_psnr is not None for p in data.front)
    lines = [
        "## Rate–distortion",
        "",
        "Validation PSNR of every completed trial against its code size, the Pareto front (chosen on validation) "
        "and the bicubic-thumbnail codec on the same validation images; stars are the two retrained models on the "
        "test split.",
        "",
        "![rate-distortion](rate_distortion.png)",
        "",
        "| trial | code values | params | val MSE | val PSNR (dB) | thumbnail at equal size (dB) | margin (dB) |"
        + (" test PSNR (dB) | thumbnail, test (dB) | test margin (dB) |" if with_test else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|---|" if with_test else ""),
        *[_front_row(p, with_test) for p in data.front],
        "",
        "On validation: " + front_verdict(front_margins(data.front)),
    ]
    if with_test:
        test = {p.trial: p.test_margin for p in data.front if p.test_margin is not None}
        lines += ["", "On test (each front trial's own model): " + front_verdict(test)]
    reach = front_reach(data.front, data.thumb_largest)
    if reach:
        lines += ["", reach]
    if "pareto_front" in data.images:
        lines += ["", f"![pareto front]({data.images['pareto_front']})"]
    return lines


def front_reach(front: list[FrontPoint], thumb_largest: tuple[int, float] | None) -> str:
    """Where the front stops short of the thumbnail curve's largest size: what a larger code would need."""
    if not front or thumb_largest is None or front[-1].code_values >= thumb_largest[0]:
        return ""
    last, (size, psnr) = front[-1], thumb_largest
    return (
        f"The front ends at {last.code_values:,} values: no completed trial with a larger code reached a lower "
        f"validation MSE than trial {last.trial}, so from {last.code_values:,} to {size:,} values the best this study "
        f"offers is that trial's {last.val_psnr:.2f} dB, against {psnr:.2f} dB for the thumbnail at {size:,} values "
        f"({last.val_psnr - psnr - FRONT_MARGIN_DB:+.2f} dB from the {FRONT_MARGIN_DB:g} dB bar there)."
    )


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


def _colorization(data: ReportData) -> list[str]:
    if data.colorization is None:
        return []
    return ["", "## Colorization", "", f"See [the colorization report]({data.colorization})."]
