"""The project's aims for reconstruction, each stated as met or missed with the figure it rests on.

Computed from a :class:`ReportData` only. The models judged are the ones the report scored on the
test split (the front's own models, the best, the reference, the enqueued points); "at every code
size" means: for each size k of the grid, the best of those models whose 8-bit code has at most k
bytes, against PCA with 8-bit coefficients at k.
"""

from __future__ import annotations

from cae.report.data import ReportData, ScoredModel
from cae.report.points import AIM_PSNR, AIM_PSNR_SIZE, AIM_SIZES, PCA_MARGIN_DB

OLD_STUDY_HOURS = 1.41 + 30 * 33.2 / 3600  # the conv-only study (1.41 h) plus its 30-epoch retrain (33.2 s/epoch)


def candidates(data: ReportData) -> list[ScoredModel]:
    """Every model the report scored on test, once each (by MLflow run)."""
    models = [p.scored for p in data.front if p.scored] + [data.top, data.reference, *data.ablation]
    return list({m.run_id: m for m in models}.values())


def margin_at_sizes(data: ReportData) -> list[tuple[int, float, ScoredModel | None, float | None]]:
    """(k, PCA 8-bit PSNR at k, the best model of ≤ k bytes, its margin) for each size of the grid."""
    rows = []
    for k, pca in sorted(data.pca_q8_test.items()):
        fitting = [m for m in candidates(data) if m.latent_values <= k]
        best = max(fitting, key=lambda m: m.q8_psnr, default=None)
        rows.append((k, pca, best, None if best is None else best.q8_psnr - pca))
    return rows


def _pca_aim(data: ReportData) -> list[str]:
    rows = margin_at_sizes(data)
    if not rows:
        return ["- PCA margin: not measured (no PCA figures on the test split)."]
    margins = [m for *_, m in rows if m is not None]
    misses = [(k, m) for k, _, _, m in rows if m is None or m < PCA_MARGIN_DB]
    lo, hi = AIM_SIZES
    verdict = "**Met**" if not misses else "**Missed**"
    worst = min(margins) if margins else None
    head = (
        f"- {verdict}: at every code size from {lo:,} to {hi:,} values, a model at least {PCA_MARGIN_DB:g} dB "
        f"above PCA with 8-bit codes on both sides: "
    )
    if not misses:
        head += f"the smallest margin is {worst:+.2f} dB."
    else:
        short = ", ".join(f"{k:,} ({'no model that small' if m is None else f'{m:+.2f} dB'})" for k, m in misses)
        head += f"short at {len(misses)} of {len(rows)} sizes: {short}."
    table = [
        "",
        "  | code size | PCA, 8-bit (test) | best model within it | its 8-bit PSNR | margin |",
        "  |---|---|---|---|---|",
    ]
    for k, pca, best, m in rows:
        name = f"{best.label} ({best.latent_values:,} values)" if best else "none"
        table.append(
            f"  | {k:,} | {pca:.2f} | {name} | {best.q8_psnr:.2f} | {m:+.2f} |"
            if best
            else f"  | {k:,} | {pca:.2f} | none | — | — |"
        )
    return [head, *table, ""]


def _psnr_aim(data: ReportData) -> str:
    small = [m for m in candidates(data) if m.code_values <= AIM_PSNR_SIZE]
    if not small:
        return f"- **Missed**: ≥ {AIM_PSNR:g} dB at ≤ {AIM_PSNR_SIZE:,} values: no model that small was scored."
    best = max(small, key=lambda m: m.test_psnr)
    verdict = "**Met**" if best.test_psnr >= AIM_PSNR else "**Missed**"
    return (
        f"- {verdict}: ≥ {AIM_PSNR:g} dB test PSNR at ≤ {AIM_PSNR_SIZE:,} values: the best, {best.label} "
        f"({best.code_values:,} values), scores {best.test_psnr:.2f} dB ({best.test_psnr - AIM_PSNR:+.2f} dB; "
        f"PCA at its size {best.test.pca:.2f} dB)."
    )


def _photos_aim(data: ReportData) -> str:
    # The learned models this study found; the reference is the seed's CAE, the thing to beat, not a candidate.
    judged = [
        m
        for m in candidates(data)
        if m.photos_psnr is not None and m.photos.pca is not None and m is not data.reference
    ]
    if not judged:
        return "- Photo tiles: not measured."
    below = [m for m in judged if m.photos_psnr <= m.photos.pca]
    worst = min(judged, key=lambda m: m.photos_psnr - m.photos.pca)
    verdict = "**Met**" if not below else "**Missed**"
    return (
        f"- {verdict}: above PCA on ordinary photos (the 32×32 photo tiles, not CIFAR-10; PCA fitted on "
        f"CIFAR-10's training split): {len(judged) - len(below)} of {len(judged)} scored models are; the smallest "
        f"margin is {worst.label}'s {worst.photos_psnr - worst.photos.pca:+.2f} dB "
        f"({worst.photos_psnr:.2f} against {worst.photos.pca:.2f} dB)."
    )


def _time_aim(data: ReportData) -> str:
    if data.reached is None and not data.single_objective:
        # Optuna keeps no per-epoch values for a two-objective trial (its curves are in MLflow).
        return "- The old best's time (35.83 dB): not measured here (a two-objective study has no epoch values)."
    if data.reached is None:
        return "- The old best (35.83 dB): not reached by any trial's epoch values."
    hours, psnr = data.reached
    verdict = "**Met**" if hours < OLD_STUDY_HOURS else "**Missed**"
    return (
        f"- {verdict}: reaching the conv-only study's best (35.83 dB) in less wall time than that study plus its "
        f"30-epoch retrain ({OLD_STUDY_HOURS:.2f} h): a trial passed it {hours:.2f} h into this study "
        f"({psnr:.2f} dB validation PSNR at that epoch)."
    )


def aim_lines(data: ReportData) -> list[str]:
    """The Markdown section on the aims; each line says met or missed and by how much."""
    return ["## The aims, met or missed", "", *_pca_aim(data), _psnr_aim(data), _photos_aim(data), _time_aim(data), ""]
