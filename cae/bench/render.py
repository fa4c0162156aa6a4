"""BENCHMARKS.md from the raw JSON alone: tables, goal verdicts, the figure; no training, no TensorFlow.

Hand-written analysis below :data:`NOTES_MARKER` survives a rewrite. Every path written is
repository-relative.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cae.bench import analysis as an
from cae.bench.figures import plot_progress
from cae.bench.plan import BARE, PRUNER_STRATEGY, STRATEGIES, VARIANTS, missing_measurements, process_sentence
from cae.bench.store import read_raw, shown_path
from cae.paths import write_text_atomic

NOTES_MARKER = "<!-- notes: kept when make bench rewrites this file -->"


def pct(x: float) -> str:
    return "never" if math.isinf(x) else "–" if math.isnan(x) else f"{x:.0%}"


def mse(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.5f}"


def span(values: Sequence[float], fmt: Any) -> str:
    """``median [min–max]`` of ``values`` in ``fmt``."""
    if not values:
        return "–"
    return f"{fmt(an.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"


def runs_by(data: dict[str, Any], prefix: str) -> dict[str, dict[int, Any]]:
    """``{group: {seed: result}}`` of the measurements ``<prefix>/<group>/seed<n>``."""
    out: dict[str, dict[int, Any]] = {}
    for key, entry in data["measurements"].items():
        m = re.fullmatch(rf"{prefix}/([^/]+)/seed(\d+)", key)
        if m:
            out.setdefault(m.group(1), {})[int(m.group(2))] = entry["result"]
    return {g: dict(sorted(seeds.items())) for g, seeds in out.items()}


def header(data: dict[str, Any], json_path: Path) -> list[str]:
    meta, entries = data["meta"], data["measurements"].values()
    dates = sorted(e["at"] for e in entries)
    hosts = sorted({e["host"] for e in entries})
    hours = sum(e["seconds"] for e in entries) / 3600
    lanes = int(data["plan"].get("lanes", 1))
    lines = [
        "# Benchmarks" + ("" if data["mode"] == "full" else f": the `{data['mode']}` plan"),
        "",
        f"Generated from `{shown_path(json_path)}` ({data['mode']} settings, `cae/bench/plan.py`), measured with "
        f"`{meta.get('command', 'make bench')}` "
        + (f"from {dates[0]} to {dates[-1]} " if dates else "")
        + f"over {meta.get('segments', 1)} run(s) of the command (each resumes the last), {hours:.1f} h of measuring "
        + (f"in all ({lanes} searches at a time)." if lanes > 1 else "in all."),
        f"Machine: {'; '.join(hosts) or meta.get('machine', '?')}.",
        "Every figure is a median over repeats or sampler seeds, with the range in brackets; ratios compare numbers "
        "of the same file.",
        "",
    ]
    if len(hosts) > 1:
        lines += ["**Measured on more than one machine**: ratios across sections are not comparable.", ""]
    missing = missing_measurements(data["plan"], set(data["measurements"]))
    if missing:
        lines += [
            f"**Partial**: {', '.join(missing)} not measured yet; `{meta.get('command', 'make bench')}` "
            "resumes where the last run stopped and rewrites this file.",
            "",
        ]
    return lines


def efficiency_section(data: dict[str, Any], out: Path, figures: Path) -> tuple[list[str], an.Efficiency | None]:
    plan, meta = data["plan"], data["meta"]
    grouped = runs_by(data, "search")
    runs = {name: [r["trials"] for r in grouped[name].values()] for name in STRATEGIES if name in grouped}
    eff = an.efficiency(runs)
    split = meta.get("split", [plan["subset"], plan["subset"] // 8, plan["subset"] // 8])
    lines = [
        "## 1. Search efficiency",
        "",
        f"Proxy task: the default study (`experiments/search.yaml`: space `{meta.get('space', '?')}`, its sampler and "
        f"pruner settings) on {split[0]:,} training and {split[1]:,} validation images "
        f"(data `{meta.get('data', '?')}`), "
        f"{plan['epochs']} epochs per trial, {plan['trials']} finished trials per run, sampler seeds "
        f"{plan['seeds']}, no enqueued reference trial. Each run goes through `run_search` / `run_tuner` with its "
        "own SQLite storage and MLflow store under `runs/bench/`; times come from its MLflow runs, from the first "
        f"trial's start. {process_sentence(plan, int(meta.get('cores', 2)))}",
        "",
    ]
    if eff is None:
        return [*lines, "Not measured yet (random search, which sets the target, has no run).", ""], None
    lines += [
        f"Target: validation MSE {eff.target:.6f}, the final best of unpruned random search (median over its "
        f"seeds). Random's runs took {eff.random_wall / 60:.1f} min (median) and reached the target after "
        f"{eff.random_ttt / 60:.1f} min. Best so far counts COMPLETE trials (what a search returns).",
        "",
        "| strategy | time to target, % of random's | reached | best at 25 % | at 50 % | at 100 % of random's time "
        "| final best | run wall time, min | finished trials | pruned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in eff.rows.items():
        lines.append(
            f"| {STRATEGIES[name].label} | {span(row.ratios, pct)} | {row.reached}/{row.seeds} | "
            + " | ".join(mse(b) for b in row.best_at)
            + f" | {mse(row.final)} | {row.wall / 60:.1f} | {row.trials:g} | {row.pruned:.0%} |"
        )
    short = [STRATEGIES[n].label for n, row in eff.rows.items() if row.trials < plan["trials"]]
    if short:
        lines += [
            "",
            f"Fewer than {plan['trials']} finished trials per run: {', '.join(short)} (the engine stopped "
            "earlier; the comparison is not on an equal budget).",
        ]
    lines += ["", *verdicts(eff, meta.get("default_pruner", "median")), *overhead(runs)]
    png = plot_progress(
        runs,
        {n: s.label for n, s in STRATEGIES.items()},
        eff,
        figures / f"search_progress-{data['mode']}.png",
        f"Best so far per strategy: median over seeds, band min–max ({data['mode']} run)",
    )
    lines += ["", f"![best so far against wall time]({os.path.relpath(png, out.parent)})", ""]
    return lines, eff


def verdicts(eff: an.Efficiency, default_pruner: str) -> list[str]:
    default = PRUNER_STRATEGY[default_pruner]
    row = eff.rows.get(default)
    label = STRATEGIES[default].label
    if row is None:
        return [f"**Goal** ({label}, the default, ≤ {an.GOAL_RATIO:.0%} of random's time): not measured yet."]
    needed = (
        f"it needed {pct(row.ratio)} of random's time"
        if math.isfinite(row.ratio)
        else "it did not reach the target in most seeds"
    )
    out = [
        f"**Goal: {label} (the default pruner when measured) reaches random search's final best in "
        f"≤ {an.GOAL_RATIO:.0%} of random's time — {an.goal_verdict(row)}**: {needed} (median over {row.seeds} "
        f"seed(s); {pct(min(row.ratios))}–{pct(max(row.ratios))}), reaching the target in {row.reached} of "
        f"{row.seeds}.",
    ]
    pruners = [n for n in PRUNER_STRATEGY.values() if n != "tpe" and n in eff.rows]
    best = an.fastest(eff, pruners)
    if best is not None:
        top = eff.rows[best]

        def shown(n: str) -> tuple[float, int]:
            return an.printed_ratio(eff.rows[n]), eff.rows[n].reached

        tie = "".join(
            f"; tied there with {STRATEGIES[n].label}, the best at random's time decides "
            f"({mse(top.best_at[-1])} vs {mse(eff.rows[n].best_at[-1])}; final best "
            f"{mse(top.final)} vs {mse(eff.rows[n].final)})"
            for n in pruners
            if n != best and shown(n) == shown(best)
        )
        out += [
            "",
            f"Fastest pruner with TPE: {STRATEGIES[best].label} ({pct(top.ratio)} of random's time, "
            f"{top.reached}/{top.seeds} seeds reached{tie})"
            + (
                ": the measured candidate for the default pruner."
                if best != default
                else ", the default when measured."
            ),
        ]
    return out


def overhead(runs: dict[str, list[Any]]) -> list[str]:
    """Time a finished trial spends outside its epochs: building, MLflow, storage, exporting the best."""
    outside = [
        (t["end"] - t["start"] - t["train_seconds"], t["end"] - t["start"])
        for rs in runs.values()
        for r in rs
        for t in r
        if t.get("train_seconds") is not None and t["end"] > t["start"]
    ]
    if not outside:
        return []
    return [
        "",
        f"Per COMPLETE trial the harness spent a median {an.median([o for o, _ in outside]):.1f} s "
        f"({an.median([o / d for o, d in outside]):.0%} of the trial) outside its training epochs: model "
        "building, MLflow, the storage, exporting a new best.",
    ]


def fidelity_section(data: dict[str, Any]) -> list[str]:
    rows = [e["result"] for k, e in sorted(data["measurements"].items()) if k.startswith("fidelity/")]
    if not rows:
        return []
    plan = data["plan"]
    short_e, long_e = plan["epochs"], plan["epochs"] * plan["fidelity_factor"]
    short, long = [r["short"] for r in rows], [r["long"] for r in rows]
    rs, rl = an.ranks(short), an.ranks(long)
    rho = an.spearman(short, long)
    keys = [
        "model.depth",
        "model.filters",
        "model.filter_growth",
        "model.code_budget",
        "train.batch_size",
        "train.learning_rate",
    ]
    lines = [
        f"## 2. Fidelity of the proxy ({len(rows)} configurations drawn at random from the space)",
        "",
        f"| {' | '.join(k.split('.')[1] for k in keys)} | val MSE, {short_e} epochs (rank) | {long_e} epochs (rank) |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for i in sorted(range(len(rows)), key=lambda i: rs[i]):
        cells = [f"{v:.2g}" if isinstance(v, float) else str(v) for v in (rows[i]["params"].get(k, "–") for k in keys)]
        lines.append(f"| {' | '.join(cells)} | {mse(short[i])} ({rs[i]:g}) | {mse(long[i])} ({rl[i]:g}) |")
    top = rl[min(range(len(rows)), key=lambda i: rs[i])]
    lines += [
        "",
        f"Spearman ρ = {rho:.2f} between the rankings after {short_e} and {long_e} epochs: short-run "
        f"rankings {an.agreement(rho)} with {plan['fidelity_factor']}× longer training. The proxy's best "
        f"configuration ranks {top:g} of {len(rows)} after {long_e} epochs.",
        "",
    ]
    return lines


def workers_section(data: dict[str, Any], eff: an.Efficiency | None) -> list[str]:
    two = runs_by(data, "workers").get("w2", {})
    # The 1-worker arm is the strategy the 2-worker runs ran (the default pruner when they ran), so a
    # default changed after them keeps comparing like with like.
    ran = {r.get("strategy") for r in two.values()} - {None}
    default = ran.pop() if len(ran) == 1 else PRUNER_STRATEGY[data["meta"].get("default_pruner", "median")]
    one = runs_by(data, "search").get(default, {})
    seeds = [s for s in two if s in one]
    if not seeds:
        return []
    cores = int(data["meta"].get("cores", 2))
    threads = int(two[seeds[0]].get("threads", max(1, cores // 2)))
    arms = {"1 worker": [one[s]["trials"] for s in seeds], "2 workers": [two[s]["trials"] for s in seeds]}
    rates = {arm: [an.trials_per_hour(r) for r in rs] for arm, rs in arms.items()}
    target = eff.target if eff is not None else math.nan
    ttt = {arm: [an.time_to_target(r, target) for r in rs] for arm, rs in arms.items()}
    lines = [
        f"## 3. Workers on one machine ({STRATEGIES[default].label}, sampler seeds {seeds})",
        "",
        f"1 worker with TensorFlow on all {cores} cores (the section 1 run of the same seed) against `WORKERS=2`, "
        f"{threads} thread(s) per worker (`CAE_THREADS`). Trials per hour count finished trials from the first "
        "trial's start to the last one's end.",
        "",
        "| layout | trials per hour | time to target, min | reached |",
        "|---|---|---|---|",
    ]
    for arm in arms:
        reached = sum(math.isfinite(t) for t in ttt[arm])
        lines.append(
            f"| {arm} | {span(rates[arm], lambda x: f'{x:.0f}')} "
            f"| {span(ttt[arm], lambda x: an._min(x))} | {reached}/{len(seeds)} |"
        )
    cmp = an.WorkersComparison(
        an.median(rates["2 workers"]) / an.median(rates["1 worker"]),
        an.median(ttt["1 worker"]),
        an.median(ttt["2 workers"]),
    )
    return [*lines, "", an.workers_recommendation(cmp, threads, cores), ""]


def throughput_section(data: dict[str, Any]) -> list[str]:
    cells: dict[int, dict[str, list[float]]] = {}
    images = 0
    for key, entry in data["measurements"].items():
        m = re.fullmatch(r"throughput/bs(\d+)/(.+)", key)
        if m:
            r = entry["result"]
            images = r["images"]
            cells.setdefault(int(m.group(1)), {})[m.group(2)] = [r["images"] / s for s in r["epoch_seconds"]]
    if not cells:
        return []
    names = [*VARIANTS, BARE]
    lines = [
        f"## 4. Training throughput, reference CAE ({images:,} training images per timed epoch)",
        "",
        "Images per second of training, each epoch timed with its validation pass, the first (tracing) epoch left out. "
        "The harness columns are timed through `train_and_evaluate` (`TrainResult.epoch_seconds`); XLA and mixed "
        "precision are its `train.jit_compile` / `train.precision` keys; the bare fit is `model.fit` on float32 "
        "NumPy arrays, the seed notebook's way.",
        "",
        f"| batch | {' | '.join(names)} | harness / bare | s per 48k epoch (harness) |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    worst = math.inf
    for bs, by in sorted(cells.items()):
        row = [span(by[n], lambda x: f"{x:,.0f}") if n in by else "–" for n in names]
        ratio = an.median(by["harness"]) / an.median(by[BARE]) if "harness" in by and BARE in by else math.nan
        worst = min(worst, ratio) if math.isfinite(ratio) else worst
        per_epoch = 48000 / an.median(by["harness"]) if "harness" in by else math.nan
        lines.append(f"| {bs} | {' | '.join(row)} | {ratio:.2f} | {per_epoch:.1f} |")
    verdict = "met" if worst >= 0.95 else "missed" if math.isfinite(worst) else "not measured"
    lowest = f" (lowest {worst:.2f})." if math.isfinite(worst) else "."
    goal = f"Goal: the harness at least 0.95× the bare fit's speed at every batch size — {verdict}{lowest}"
    return [*lines, "", goal, ""]


def gpu_section(data: dict[str, Any]) -> list[str]:
    rows = [
        (k.split("/")[1], k.split("/")[2][2:], e["result"])
        for k, e in sorted(data["measurements"].items())
        if k.startswith("gpu/")
    ]
    if not rows:
        return [
            "## 5. GPU",
            "",
            "Not measured: TensorFlow saw no GPU on the machine that ran this benchmark. "
            "`make bench` measures a full-data epoch in float32 and in mixed_float16 where it sees one.",
            "",
        ]
    lines = [
        f"## 5. GPU ({rows[0][2]['device']}), reference CAE, full-data epochs through `train_and_evaluate`",
        "",
        "| precision | batch | s per epoch | img/s |",
        "|---|---|---|---|",
    ]
    for policy, bs, r in rows:
        lines.append(
            f"| {policy} | {bs} | {span(r['epoch_seconds'], lambda x: f'{x:.1f}')} "
            f"| {r['images'] / an.median(r['epoch_seconds']):,.0f} |"
        )
    return [*lines, ""]


def write_report(json_path: Path, out: Path, figures: Path | None = None) -> Path:
    """Rewrite ``out`` from the raw JSON at ``json_path``, keeping the notes below the marker."""
    data = read_raw(json_path)
    efficiency_lines, eff = efficiency_section(data, out, figures or json_path.parent)
    lines = [
        *header(data, json_path),
        *efficiency_lines,
        *fidelity_section(data),
        *workers_section(data, eff),
        *throughput_section(data),
        *(gpu_section(data) if data["plan"]["batch_sizes"] else []),
    ]
    # Hand-written analysis below the marker (why a goal was missed, what limits it) survives a rerun.
    previous = out.read_text() if out.exists() else ""
    if NOTES_MARKER in previous:
        lines += ["", NOTES_MARKER + previous.split(NOTES_MARKER, 1)[1].rstrip("\n")]
    write_text_atomic(out, "\n".join(lines).rstrip("\n") + "\n")
    return out
