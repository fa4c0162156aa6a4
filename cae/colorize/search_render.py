"""The Markdown of `runs/<study>/report/colorization-search.md`, from the measured numbers alone.

:class:`Measured` is what :func:`cae.colorize.report.measure` gathers; :func:`render` writes the
report from it, so every sentence is tested with hand-made numbers, no training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cae.colorize.final import FinalModel
from cae.colorize.scoring import vivid_enough
from cae.data import CLASSES

# Below these the report states no findings (a couple of short trials support none).
MIN_TRIALS = 3
MIN_EPOCHS = 5

# The project's aims for colorization (issue 25): at colourfulness >= VIVID_CF, a model GRAY_MARGIN_DB
# above the gray copy that a classifier recognises at least as well as the gray images; the most
# accurate model at ACCURATE_PSNR or more.
VIVID_CF, GRAY_MARGIN_DB, ACCURATE_PSNR = 0.7, 1.0, 23.8


@dataclass(kw_only=True)
class Measured:
    study: str
    source: str
    command: str
    data: dict[str, Any]  # data_source, sizes, seed, machine, trial and final epochs
    trials: list[dict[str, Any]]  # every trial: number, state, recipe, val_psnr, val_colourfulness, reason
    finals: list[FinalModel]
    chosen: int  # trial number of the chosen model
    baselines: dict[str, dict[str, float]]
    semantic: dict[str, Any]  # true/gray accuracy, classifier test accuracy and run id
    gray_photos_psnr: float
    parent_run_id: str | None
    wall_hours: float
    oracle: FinalModel | None = None  # the chosen network given the true class: a bound, never chosen
    source_config: str | None = None  # the experiment file the study started from (FROM=), if not a study
    registered: str | None = None  # "models:/<study>/<version>" of the chosen model


def _recovered(acc: float, s: dict[str, Any]) -> float:
    gap = s["true_classifier_acc"] - s["gray_classifier_acc"]
    return (acc - s["gray_classifier_acc"]) / gap if gap > 0 else float("nan")


def _pct(x: float) -> str:
    return f"{x:.0%}" if x == x else "—"  # NaN when colour does not help the classifier at all


def targets(m: Measured) -> list[str]:
    """Each aim of the project, met or missed, with the figure it rests on (front models on test)."""
    gray = m.baselines["gray copied to RGB"]["test_psnr"]
    gray_acc, need = m.semantic["gray_classifier_acc"], gray + GRAY_MARGIN_DB
    psnr = {f.trial: f.test["test_psnr"] for f in m.finals}
    cf = {f.trial: f.test["test_colourfulness"] for f in m.finals}
    vivid = [f for f in m.finals if cf[f.trial] >= VIVID_CF]
    aim = (
        f"at colourfulness ≥ {VIVID_CF}, a model ≥ {GRAY_MARGIN_DB:g} dB above the gray copy (≥ {need:.2f} dB) "
        f"that the classifier recognises at least as well as the gray images ({gray_acc:.1%})"
    )
    if vivid:
        meeting = [f for f in vivid if psnr[f.trial] >= need and f.classifier_acc >= gray_acc]
        v = max(meeting or vivid, key=lambda f: psnr[f.trial])  # one that meets it, else the closest in PSNR
        lines = [
            f"**{'Met' if meeting else 'Missed'}**: {aim}: the best front model that colourful"
            f"{' and recognised so' if meeting else ''} (trial {v.trial}, colourfulness {cf[v.trial]:.2f}) "
            f"scores {psnr[v.trial]:.2f} dB ({psnr[v.trial] - need:+.2f} dB against the aim) and is classified "
            f"{v.classifier_acc:.1%} ({(v.classifier_acc - gray_acc) * 100:+.1f} points vs gray)."
        ]
    else:
        most = max(m.finals, key=lambda f: cf[f.trial])
        lines = [
            f"**Missed**: {aim}: no front model is that colourful on test (the most colourful, trial "
            f"{most.trial}, reaches {cf[most.trial]:.2f} at {psnr[most.trial]:.2f} dB)."
        ]
    best = max(m.finals, key=lambda f: psnr[f.trial])
    lines.append(
        f"**{'Met' if psnr[best.trial] >= ACCURATE_PSNR else 'Missed'}**: the most accurate model ≥ "
        f"{ACCURATE_PSNR} dB: trial {best.trial} scores {psnr[best.trial]:.2f} dB "
        f"({psnr[best.trial] - ACCURATE_PSNR:+.2f} dB)."
    )
    below = [f for f in m.finals if f.test["test_psnr"] <= gray]
    below_photos = [f for f in m.finals if f.photos_psnr <= m.gray_photos_psnr]
    lines.append(
        f"**{'Met' if not below and not below_photos else 'Missed'}**: every front model above the gray copy in "
        f"PSNR: on CIFAR-10 test {min(psnr.values()) - gray:+.2f} dB at worst "
        f"({len(below)} below); on ordinary photos (33 tiles of three photos) "
        f"{min(f.photos_psnr for f in m.finals) - m.gray_photos_psnr:+.2f} dB at worst ({len(below_photos)} below)."
    )
    c = next(f for f in m.finals if f.trial == m.chosen)
    vivid_val = m.data.get("vivid", VIVID_CF)
    how = (
        f"the best PSNR among the front models within {1 - vivid_val:.2f} of the true colour spread"
        if any(vivid_enough(f.val["val_colourfulness"], vivid_val) for f in m.finals)
        else f"no front model within {1 - vivid_val:.2f} of the true colour spread: the best PSNR"
    )
    lines.append(
        f"The chosen model (trial {c.trial}; on validation, {how}) scores {psnr[c.trial]:.2f} dB at "
        f"colourfulness {cf[c.trial]:.2f}; its images are classified "
        f"{_pct(_recovered(c.classifier_acc, m.semantic))} of the way from gray ({gray_acc:.1%}) to true "
        f"colour ({m.semantic['true_classifier_acc']:.1%})."
    )
    return lines


def oracle_lines(m: Measured) -> list[str]:
    """How much knowing the object could buy the chosen network at best: the oracle's figures beside it."""
    o = m.oracle
    if not m.finals:
        return []
    if o is None:
        return [
            "## Oracle bound: the chosen network given the true class",
            "",
            "Not measured in this run (the command trains it after the front; its log says why it is missing).",
            "",
        ]
    c = next(f for f in m.finals if f.trial == m.chosen)
    need = m.baselines["gray copied to RGB"]["test_psnr"] + GRAY_MARGIN_DB
    psnr, cf = o.test["test_psnr"], o.test["test_colourfulness"]
    gain = psnr - c.test["test_psnr"]
    reach = "within reach of the oracle" if psnr >= need and cf >= VIVID_CF else "out of the oracle's reach too"
    worth = (
        f"knowing the object bought this network {gain:+.2f} dB on this data"
        if gain > 0
        else f"the true class bought this network nothing in PSNR ({gain:+.2f} dB): what it lacks is not the object's "
        "identity"
    )
    return [
        "## Oracle bound: the chosen network given the true class",
        "",
        f"One run, trained as long as the chosen model ({o.epochs} epochs; MLflow run `{o.run_id}`; never chosen "
        f"or registered; a semantic branch fed the true class, no class loss): {psnr:.2f} dB at colourfulness "
        f"{cf:.2f}, classified {o.classifier_acc:.1%}, against the chosen model's {c.test['test_psnr']:.2f} dB at "
        f"{c.test['test_colourfulness']:.2f}, {c.classifier_acc:.1%}: {worth}. The PSNR part of the aim "
        f"(≥ {need:.2f} dB at colourfulness ≥ {VIVID_CF}) is {reach}.",
        "",
    ]


def render(m: Measured) -> str:
    """The report's Markdown, from the measured numbers only."""
    n_train, n_val, n_test = m.data["sizes"]
    final = f", the front trained again for {m.data['final_epochs']} epochs" if m.data["final_epochs"] else ""
    lines = [
        f"# Colorization study: `{m.study}`",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{m.command}` on {m.data['machine']}. Data "
        f"`{m.data['data_source']}`, split {n_train:,}/{n_val:,}/{n_test:,} (seed {m.data['seed']}); trials of "
        f"{m.data['epochs']} epochs{final}; study wall time {m.wall_hours:.2f} h. Starts from "
        + (f"`{m.source_config}`" if m.source_config else f"study `{m.source}`'s best architecture")
        + ". "
        f"MLflow parent run `{m.parent_run_id}` (experiment `{m.study}`). The front and the "
        f"chosen model are picked on validation; the test split scores only them.",
        "",
        "## Targets",
        "",
        *[f"- {t}" for t in (targets(m) if m.finals else ["no completed trial yet"])],
        "",
        "## The front: PSNR against colourfulness",
        "",
        "Every completed trial on validation, the Pareto front, the final models on test (stars), the "
        "no-learning baselines and the aim (shaded); dashed: a classification model's temperature curve.",
        "",
        "![front](colorization-front.png)",
        "",
        "## Final models on the test split",
        "",
        "| model | epochs | test MSE | PSNR (dB) | SSIM | colourfulness | Hasler–Süsstrunk (true) "
        "| classifier acc | gap recovered | photos PSNR (dB) | temperature | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += final_rows(m)
    lines += [
        "",
        f"True colour: classifier accuracy {m.semantic['true_classifier_acc']:.1%} (its own test accuracy "
        f'{m.semantic["classifier_acc"]:.1%}, MLflow run `{m.semantic["classifier_run_id"]}`). "Gap recovered" is '
        "(colorized − gray) / (true − gray) accuracy: the semantic check of Zhang et al. Saved models take the "
        f"1-channel BT.601 luma in [0, 1] and return RGB in [0, 1], decoding included: `runs/{m.study}/final/`"
        + (" (the oracle's file also takes the class)" if m.oracle is not None else "")
        + (f"; the chosen one is registered as `{m.registered}`." if m.registered else "."),
        "",
        "![colorization grid](colorization-search.png)",
        "",
        *oracle_lines(m),
        *per_class_table(m),
        "",
        "## Every trial (validation)",
        "",
        "| trial | state | recipe | val PSNR (dB) | val colourfulness | temperature | note |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += trial_rows(m)
    lines += ["", "## Shortcomings, measured", "", *[f"- {s}" for s in shortcomings(m)]]
    return "\n".join(lines) + "\n"


def final_rows(m: Measured) -> list[str]:
    """The test table's rows: the no-learning baselines, the front's final models, the oracle bound."""
    lines: list[str] = []
    for name, b in m.baselines.items():
        lines.append(
            f"| baseline: {name} | — | {b['test_mse']:.6f} | {b['test_psnr']:.2f} | {b['test_ssim']:.4f} | "
            f"{b['test_colourfulness']:.2f} | {b['test_hasler_cf']:.1f} ({b['true_hasler_cf']:.1f}) | "
            + (
                f"{m.semantic['gray_classifier_acc']:.1%} | 0 % | {m.gray_photos_psnr:.2f} |"
                if name.startswith("gray copied")
                else "— | — | — |"
            )
            + " — | — |"
        )
    for f in m.finals:
        t = f.test
        mark = " **(chosen)**" if f.trial == m.chosen else ""
        recovered = _pct(_recovered(f.classifier_acc, m.semantic))
        lines.append(
            f"| trial {f.trial}: {f.label}{mark} | {f.epochs} | {t['test_mse']:.6f} | {t['test_psnr']:.2f} | "
            f"{t['test_ssim']:.4f} | {t['test_colourfulness']:.2f} | {t['test_hasler_cf']:.1f} "
            f"({t['true_hasler_cf']:.1f}) | {f.classifier_acc:.1%} | {recovered} | "
            f"{f.photos_psnr:.2f} | {f'{f.temperature:g}' if f.temperature else '—'} | `{f.run_id}` |"
        )
    if m.oracle is not None:
        o, t = m.oracle, m.oracle.test
        lines.append(
            f"| oracle: trial {o.trial} given the true class (a bound) | {o.epochs} | {t['test_mse']:.6f} | "
            f"{t['test_psnr']:.2f} | {t['test_ssim']:.4f} | {t['test_colourfulness']:.2f} | {t['test_hasler_cf']:.1f} "
            f"({t['true_hasler_cf']:.1f}) | {o.classifier_acc:.1%} | {_pct(_recovered(o.classifier_acc, m.semantic))} "
            f"| — | {f'{o.temperature:g}' if o.temperature else '—'} | `{o.run_id}` |"
        )
    return lines


def trial_rows(m: Measured) -> list[str]:
    """One row per trial of the study, on validation."""
    lines: list[str] = []
    for t in m.trials:
        psnr = f"{t['val_psnr']:.2f}" if t["val_psnr"] is not None else "—"
        cf = f"{t['val_colourfulness']:.2f}" if t["val_colourfulness"] is not None else "—"
        note = ", ".join(x for x in (t["first"], t["reason"]) if x)
        lines.append(
            f"| {t['number']} | {t['state']} | {t['recipe']} | {psnr} | {cf} | "
            f"{t['temperature'] if t['temperature'] else '—'} | {note.strip()} |"
        )
    return lines


def per_class_table(m: Measured) -> list[str]:
    if not m.finals:
        return []
    c = next(f for f in m.finals if f.trial == m.chosen)
    rows = [
        "## Per class (chosen model, test)",
        "",
        "| class | Hasler–Süsstrunk predicted | true | ratio | MSE |",
        "|---|---|---|---|---|",
    ]
    for name in CLASSES:
        if name in c.per_class["hasler_cf"]:
            pred, true = c.per_class["hasler_cf"][name], c.per_class["true_hasler_cf"][name]
            rows.append(f"| {name} | {pred:.1f} | {true:.1f} | {pred / true:.2f} | {c.per_class['mse'][name]:.5f} |")
    return rows


def shortcomings(m: Measured) -> list[str]:
    """Claims about what the models get wrong, each backed by a number measured here."""
    if not m.finals:
        return ["nothing measured yet"]
    completed = sum(t["state"] == "COMPLETE" for t in m.trials)
    epochs = max(f.epochs for f in m.finals)
    if completed < MIN_TRIALS or epochs < MIN_EPOCHS:  # no finding from a handful of short runs
        return [
            f"Too thin to state findings: {completed} completed trial(s), models trained at most {epochs} "
            f"epoch(s) (findings need {MIN_TRIALS} trials and {MIN_EPOCHS} epochs); the tables above are "
            "the measurements."
        ]
    out = []
    c = next(f for f in m.finals if f.trial == m.chosen)
    ratios = {n: c.per_class["hasler_cf"][n] / c.per_class["true_hasler_cf"][n] for n in c.per_class["hasler_cf"]}
    dull = sorted(ratios, key=ratios.get)
    out.append(
        f"Colour is recovered unevenly across classes (chosen model): the least colourful relative to the "
        f"truth are {', '.join(f'{n} ({ratios[n]:.2f})' for n in dull[:3])}; the most: "
        f"{', '.join(f'{n} ({ratios[n]:.2f})' for n in dull[-3:])}."
    )
    collapsed = [t for t in m.trials if "collapsed" in t["reason"]]
    if collapsed:
        out.append(
            f"{len(collapsed)} trial(s) collapsed to one colour and were stopped early: "
            + "; ".join(f"trial {t['number']} ({t['reason']})" for t in collapsed[:3])
            + "."
        )
    regress = [f for f in m.finals if not f.temperature]
    classify = [f for f in m.finals if f.temperature]
    if regress and classify:
        r = max(regress, key=lambda f: f.test["test_psnr"])
        k = max(classify, key=lambda f: f.test["test_colourfulness"])
        cost = k.test["test_psnr"] - r.test["test_psnr"]
        verdict = (
            f"its vivid colours cost {-cost:.2f} dB (wrong hues, saturated)"
            if cost < 0
            else f"its vivid colours cost nothing ({cost:+.2f} dB)"
        )
        out.append(
            f"Regression against classification: the best regression model (trial {r.trial}) scores "
            f"{r.test['test_psnr']:.2f} dB at colourfulness {r.test['test_colourfulness']:.2f}; the most "
            f"colourful classification model (trial {k.trial}) {k.test['test_psnr']:.2f} dB at "
            f"{k.test['test_colourfulness']:.2f}: {verdict}."
        )
    for f in classify:
        if f.curve:
            hot, cold = f.curve[0], f.curve[-1]
            out.append(
                f"Trial {f.trial}'s decoding temperature trades the two on validation: T={hot['temperature']:g} "
                f"gives {hot['psnr']:.2f} dB at colourfulness {hot['colourfulness']:.2f}, "
                f"T={cold['temperature']:g} {cold['psnr']:.2f} dB at {cold['colourfulness']:.2f}."
            )
    gray = m.baselines["gray copied to RGB"]["test_psnr"]
    out.append(
        f"Over the gray copy ({gray:.2f} dB) the best model gains "
        f"{max(f.test['test_psnr'] for f in m.finals) - gray:+.2f} dB; the semantic check says how much of "
        f"that is recognisable colour: {_pct(max(_recovered(f.classifier_acc, m.semantic) for f in m.finals))} "
        "of the gray→colour accuracy gap at best."
    )
    return out
