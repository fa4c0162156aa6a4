"""``search.md`` from a ``ReportData``: Markdown only, no study, no models, no files read.

Sections: header, study, best trial, the scored models against the baselines (PCA, the thumbnail,
the reference CAE), the search against its enqueued starting points, loss curves and the search
over time, what mattered, rate–distortion with the front table (a study across code sizes),
colorization. A sentence is written only where the data supports it, and a run too small for a
statement says so instead. This project's own aims are in results/README.md, not here.
"""

from __future__ import annotations

import math
from typing import Any

from cae.report.data import FrontPoint, Importance, Rank, ReportData, ScoredModel
from cae.report.points import MIN_FOR_IMPORTANCES


def render(data: ReportData) -> str:
    lines = [
        *_header(data),
        *_study(data),
        *_best(data),
        *_scored(data),
        *_ablation(data),
        *_curves(data),
        *_mattered(data),
        *(_rate_distortion(data) if not data.single_objective else []),
        *_colorization(data),
    ]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def db(v: float | None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
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
        f"Optuna storage `{data.storage}`. PSNR is over the whole split; a margin is a model's PSNR minus a "
        "baseline's at the same code size: **PCA** (the optimal linear code, fitted on the training split) and the "
        "bicubic **thumbnail** (no learning).",
        "",
    ]


SHORT_TRIALS = 3  # epochs per trial below which a ranking says little about longer training
# Finished trials (completed or pruned: each a point the search judged) below which a study has not
# searched yet: the default sampler's first 10 points are random draws.
FEW_TRIALS = 10


def _study(data: ReportData) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in data.states.items())
    small = []
    if data.epochs_per_trial < SHORT_TRIALS:
        small.append(
            f"- **A run too short for rankings**: {data.epochs_per_trial} epoch(s) per trial; which model is best "
            "after so little training says little about which is best after a full-length trial."
        )
    finished = data.states.get("COMPLETE", 0) + data.states.get("PRUNED", 0)
    if finished < FEW_TRIALS:
        small.append(
            f"- **A run too small to judge the search**: {finished} finished trial(s); its best says how these "
            f"points compare, not what the space holds (the default study runs 30)."
        )
    return [
        "## Study",
        "",
        f"- Trials: {data.n_trials} ({states}); objectives {data.objectives}; "
        f"{data.epochs_per_trial} epochs per trial at most.",
        f"- Wall time: {_duration(data.wall_seconds)} from first start to last finish "
        f"({_duration(data.trial_seconds)} of trial time).",
        f"- Search space: `{data.space}`.",
        *small,
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


SCORED_HEAD = [
    "| model | epochs | params | code / latent (values) | test MSE | PSNR | SSIM | PCA at code | vs PCA "
    "| 8-bit latent PSNR | PCA 8-bit at latent bytes | vs PCA, equal bytes | thumbnail at code | vs thumbnail "
    "| s/epoch | MLflow run |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def scored_row(r: ScoredModel) -> str:
    epochs = f"{r.epochs} (retrained)" if r.retrained else f"{r.epochs} (its own)"
    return (
        f"| {r.label} | {epochs} | {r.n_params:,} | {r.code_values:,} / {r.latent_values:,} | {r.test_mse:.6f} | "
        f"{r.test_psnr:.2f} | {r.test_ssim:.4f} | {db(r.test.pca)} | {db(r.vs_pca, True)} | {r.q8_psnr:.2f} | "
        f"{db(r.test.pca_q8)} | {db(r.vs_pca_q8, True)} | {db(r.test.thumb)} | {db(r.vs_thumb, True)} | "
        f"{r.seconds_per_epoch:.1f} | `{r.run_id}` |"
    )


def _scored(data: ReportData) -> list[str]:
    ref, top = data.reference, data.top
    how = (
        "each trial's own model (no retraining)"
        if not (ref.retrained or top.retrained)
        else f"both retrained for {data.budget} epochs"
    )
    return [
        f"## The best trial against the baselines on the test split: {how}",
        "",
        *SCORED_HEAD,
        scored_row(ref),
        scored_row(top),
        "",
        f"The reference is the seed's CAE, a baseline run of its own (never a trial). The best is "
        f"{top.test_psnr - ref.test_psnr:+.2f} dB against it ({ref.test_mse / top.test_mse:.2f}× lower test MSE) and "
        f"{db(top.vs_pca, True)} dB against PCA at its "
        f"{top.code_values:,} values "
        f"({db(top.vs_pca_q8, True)} dB with 8-bit codes on both sides). 8-bit: each latent channel (PCA: each "
        "component) stored as an integer in its range over the training split; equal bytes is the latent's size.",
        "",
        "![reconstructions](reconstructions.png)",
        "",
    ]


def _ablation(data: ReportData) -> list[str]:
    if not data.ablation and not data.stopped:
        return []
    sizes = sorted({r.code_values for r in data.ablation})
    pca = [
        f"PCA alone at {k:,} values scores {db(data.pca_test.get(k))} dB ({db(data.pca_q8_test.get(k))} dB with "
        "8-bit coefficients): a linear code needs no training."
        for k in sizes
        if k in data.pca_test
    ]
    top = data.top
    verdicts = [
        f"The search's best (trial {data.best.number}) is {db(top.test_psnr - r.test_psnr, True)} dB on test against "
        f"{r.label}, an enqueued point at the same length."
        for r in data.ablation
        if r.run_id != top.run_id
    ]
    if any(r.run_id == top.run_id for r in data.ablation):
        verdicts.append(f"The search's best is an enqueued point (trial {data.best.number}): it found nothing better.")
    return [
        "## The search against its starting points (the enqueued points, same budget)",
        "",
        "The points handed to the study before it searched (a prior: the expert's guesses); each row is that "
        "trial's own model.",
        "",
        *SCORED_HEAD,
        *[scored_row(r) for r in data.ablation],
        "",
        *verdicts,
        "",
        *pca,
        "",
        *_stopped(data),
    ]


def _stopped(data: ReportData) -> list[str]:
    """The enqueued points that did not complete: how far they got, against PCA on validation."""
    lines = []
    for p in data.stopped:
        reached = (
            f"at {p.val_psnr:.2f} dB validation PSNR after {p.epochs} epoch(s)"
            if p.val_psnr is not None
            else f"after {p.epochs} epoch(s)"
            if p.epochs
            else "before its first epoch"
        )
        versus = f" (PCA at its {p.code_values:,} values: {p.pca_val:.2f} dB)" if p.pca_val is not None else ""
        lines.append(f"- Trial {p.trial} ({p.label}): {p.state.lower()} {reached}{versus}; no model of it was kept.")
    return [*lines, ""] if lines else []


def _curves(data: ReportData) -> list[str]:
    lines = []
    if "compare" in data.images:
        lines += [
            "## Loss curves of the five best trials",
            "",
            f"Validation solid, train dashed; read from MLflow (`make compare STUDY={data.study}`).",
            "",
            f"![compare]({data.images['compare']})",
            "",
        ]
    if "search_progress" in data.images:
        lines += [
            "## The search, trial by trial, against PCA",
            "",
            "Each trial's validation margin over PCA at the study's code size, the best so far, and the reference "
            "CAE and the thumbnail on the same validation images; pruned trials at their best epoch, the enqueued "
            "points ringed.",
            "",
            f"![search progress]({data.images['search_progress']})",
            "",
        ]
    if "optimization_history" in data.images:
        lines += [
            "## The search over time",
            "",
            "Each trial's validation MSE in the order it ran, and the best so far (Optuna's plot).",
            "",
            f"![optimization history]({data.images['optimization_history']})",
            "",
        ]
    return lines


def importance_sentence(imp: Importance) -> str:
    """One parameter's fANOVA share (main effects, normalised over the parameters) and its direction."""
    if imp.by_choice is not None:
        detail = "mean val MSE by choice: " + ", ".join(f"{k} {m:.5f} (n={n})" for k, m, n in imp.by_choice)
    elif imp.rho is None or not math.isfinite(imp.rho):
        detail = "too few distinct values to tell"
    else:
        trend = (
            "higher values went with lower error"
            if imp.rho < -0.3
            else "higher values went with higher error"
            if imp.rho > 0.3
            else "no monotonic trend"
        )
        detail = f"{trend} (Spearman ρ = {imp.rho:.2f})"
    return (
        f"`{imp.name}`: {imp.share:.0%} share of the variance of validation MSE explained by single parameters "
        f"(fANOVA); {detail}."
    )


def rank_verdict(rho: Rank) -> str:
    r = rho[0]
    if not math.isfinite(r):
        return f"too few trials to tell (fewer than {MIN_FOR_IMPORTANCES} completed)"
    if abs(r) < 0.3:
        return "no clear monotonic relation"
    strength = "a clear" if abs(r) >= 0.6 else "a moderate"
    return f"{strength} {'negative' if r < 0 else 'positive'} rank correlation"


def _mattered(data: ReportData) -> list[str]:
    if data.importances:
        sentences = [importance_sentence(i) for i in data.importances]
    elif data.n_completed < MIN_FOR_IMPORTANCES:
        sentences = [
            f"Too few completed trials ({data.n_completed}) to say what mattered: importances and rank "
            f"correlations need at least {MIN_FOR_IMPORTANCES}."
        ]
    else:
        sentences = ["(no importances: no searched parameter varied across the completed trials)"]
    lines = ["## What mattered", "", *[f"- {s}" for s in sentences]]
    if data.importances and "param_importances" in data.images:
        lines += ["", f"![importances]({data.images['param_importances']})"]
    return [*lines, *_size_vs_error(data)]


def _size_vs_error(data: ReportData) -> list[str]:
    if data.single_objective:
        return ["", "One code size per study: `make pareto` (two objectives) relates code size and error.", ""]
    if data.n_completed < MIN_FOR_IMPORTANCES:
        return [""]
    (rc, pc), (rp, pp) = data.rho_code, data.rho_params
    return [
        "",
        "### Is there an obvious correlation between the size of the latent representation and the error?",
        "",
        f"Across {data.n_completed} completed trials: code size vs validation MSE has Spearman ρ = {rc:.2f} "
        f"(p = {pc:.2g}): {rank_verdict(data.rho_code)}; parameter count vs validation MSE ρ = {rp:.2f} "
        f"(p = {pp:.2g}): {rank_verdict(data.rho_params)}.",
        "",
        "![size vs error](size_vs_error.png)",
        "",
    ]


def _front_row(p: FrontPoint, with_test: bool) -> str:
    s = p.scored
    test = (
        (
            f" {db(s.test_psnr)} | {db(s.vs_pca, True)} | {db(s.q8_psnr)} | {db(s.vs_pca_q8, True)} | "
            f"{db(s.vs_thumb, True)} |"
            if s
            else " n/a | n/a | n/a | n/a | n/a |"
        )
        if with_test
        else ""
    )
    return (
        f"| {p.trial} | {p.code_values:,} | {p.n_params:,} | {p.val_loss:.6f} | {p.val_psnr:.2f} | "
        f"{db(p.val.pca)} | {db(p.val_vs_pca, True)} | {db(p.val_vs_thumb, True)} |{test}"
    )


def _rate_distortion(data: ReportData) -> list[str]:
    with_test = any(p.scored is not None for p in data.front)
    return [
        "## Rate–distortion",
        "",
        "Validation PSNR of every completed trial against its code size, the Pareto front (chosen on validation), "
        "PCA (float and 8-bit coefficients) and the thumbnail on the same validation images; stars are models "
        "scored on the test split (filled: float code, open: 8-bit).",
        "",
        "![rate-distortion](rate_distortion.png)",
        "",
        "| trial | code values | params | val MSE | val PSNR | PCA, val | vs PCA, val | vs thumbnail, val |"
        + (" test PSNR | vs PCA | 8-bit PSNR | vs PCA 8-bit | vs thumbnail |" if with_test else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|---|---|---|" if with_test else ""),
        *[_front_row(p, with_test) for p in data.front],
        *(["", f"![pareto front]({data.images['pareto_front']})"] if "pareto_front" in data.images else []),
        "",
    ]


def _colorization(data: ReportData) -> list[str]:
    if data.colorization is None:
        return []
    return ["## Colorization", "", f"See [the colorization report]({data.colorization})."]
