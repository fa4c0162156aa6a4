"""BENCHMARKS.md from the measurements alone: speed (``speed.json``), and the search strategies replayed
over the learning-curve table (``replay.json``, ``curves.csv``); no training, no TensorFlow.

Hand-written analysis below :data:`NOTES_MARKER` survives a rewrite. Every path written is
repository-relative.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from cae.bench.speed import BARE, VARIANTS
from cae.paths import write_text_atomic

NOTES_MARKER = "<!-- notes: kept when make bench rewrites this file -->"
GOAL_SPEED = 0.95  # the harness at least this share of a bare fit's speed at every batch size


def _span(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def speed_section(data: dict[str, Any]) -> list[str]:
    cells: dict[int, dict[str, list[float]]] = {}
    images, hosts = 0, set()
    for key, entry in data["measurements"].items():
        parts = key.split("/")
        if parts[0] == "throughput":
            r = entry["result"]
            images = r["images"]
            hosts.add(entry["host"])
            cells.setdefault(int(parts[1][2:]), {})[parts[2]] = [r["images"] / s for s in r["epoch_seconds"]]
    if not cells:
        return ["## Training speed", "", "Not measured yet: `make bench`.", ""]
    names = [*VARIANTS, BARE]
    lines = [
        f"## Training speed: the reference CAE, {images:,} training images per timed epoch",
        "",
        f"Measured on {'; '.join(sorted(hosts))}. Images per second of training (median [min–max] over the "
        "timed epochs), each epoch with its validation pass, the first (tracing) epoch left out. The harness "
        "columns are `train_and_evaluate` itself; XLA and mixed precision are its `train.jit_compile` / "
        "`train.precision` keys; the bare fit is `model.fit` on float32 NumPy arrays, the seed notebook's way.",
        "",
        f"| batch | {' | '.join(names)} | harness / bare | s per 48k epoch (harness) |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    worst = math.inf
    for bs, by in sorted(cells.items()):
        row = [_span(by[n], ",.0f") if n in by else "–" for n in names]
        ratio = (
            statistics.median(by["harness"]) / statistics.median(by[BARE]) if {"harness", BARE} <= set(by) else math.nan
        )
        worst = min(worst, ratio) if math.isfinite(ratio) else worst
        per_epoch = 48000 / statistics.median(by["harness"]) if "harness" in by else math.nan
        lines.append(f"| {bs} | {' | '.join(row)} | {ratio:.2f} | {per_epoch:.1f} |")
    verdict = "met" if worst >= GOAL_SPEED else "missed" if math.isfinite(worst) else "not measured"
    lines += ["", f"Goal: the harness at least {GOAL_SPEED}× the bare fit's speed at every batch size: **{verdict}** "
              f"(lowest {worst:.3f}).", ""]  # fmt: skip
    gpu = [(k.split("/")[1], k.split("/")[2][2:], e["result"]) for k, e in sorted(data["measurements"].items())
           if k.startswith("gpu/")]  # fmt: skip
    if not gpu:
        return [*lines, "GPU: not measured (TensorFlow saw no GPU on the machine that ran `make bench`).", ""]
    lines += [f"### GPU ({gpu[0][2]['device']}): full-data epochs", "", "| precision | batch | s per epoch | img/s |",
              "|---|---|---|---|"]  # fmt: skip
    for policy, bs, r in gpu:
        lines.append(f"| {policy} | {bs} | {_span(r['epoch_seconds'], '.1f')} | "
                     f"{r['images'] / statistics.median(r['epoch_seconds']):,.0f} |")  # fmt: skip
    return [*lines, ""]


def fidelity_lines(rows: list[dict[str, Any]]) -> list[str]:
    """How well a configuration's rank after a few epochs predicts its rank at the table's last epoch
    (Spearman over the table's configurations): what early pruning relies on."""
    from scipy.stats import spearmanr

    curves: dict[tuple[str, int], dict[int, float]] = {}
    for r in rows:
        curves.setdefault((r["config"], r["seed"]), {})[r["epoch"]] = r["val_mse"]
    last = max(max(c) for c in curves.values())
    complete = [c for c in curves.values() if len(c) == last and all(math.isfinite(v) for v in c.values())]
    if len(complete) < 5:
        return []
    final = [min(c.values()) for c in complete]
    cells = []
    for epoch in (1, 3, 9):
        if epoch < last:
            rho = spearmanr([c[epoch] for c in complete], final).statistic
            cells.append(f"epoch {epoch}: {rho:.2f}")
    return [f"Rank agreement with the best of {last} epochs (Spearman over {len(complete)} recorded runs): "
            + ", ".join(cells) + ".", ""]  # fmt: skip


def search_section(folder: Path) -> list[str]:
    """The replay's verdict, from ``replay.md`` and the table (`make bench PLAN=table`, then `PLAN=replay`)."""
    from cae.bench.table import read_rows, table_paths

    lines = ["## Search strategies (replayed over the learning-curve table)", ""]
    csv_path, meta_path = table_paths(folder)
    rows = read_rows(csv_path)
    if not rows:
        return [*lines, "Not recorded yet: `make bench PLAN=table` (hours), then `make bench PLAN=replay`.", ""]
    meta = json.loads(meta_path.read_text())
    configs = len({r["config"] for r in rows})
    margins = [r["val_margin_db"] for r in rows if r["epoch"] == max(x["epoch"] for x in rows)]
    lines += [
        f"The table (`results/bench/curves.csv`): {configs} configurations of `{meta['space']}` at "
        f"{meta['code_values']} values, {len({(r['config'], r['seed']) for r in rows})} runs, "
        f"{meta['plan']['epochs']} epochs each on {meta['split'][0]:,} training images; final margin over PCA "
        f"{np.nanmedian(margins):+.2f} dB median, {np.nanmax(margins):+.2f} dB best.",
        "",
        *fidelity_lines(rows),
    ]
    replay = folder / "replay.md"
    if replay.exists():
        text = replay.read_text()
        chosen = next((line for line in text.splitlines() if line.startswith("**Chosen")), "")
        lines += [
            chosen,
            "",
            "The whole comparison, with its figures: [results/bench/replay.md](results/bench/replay.md).",
            "",
        ]
    else:
        lines += ["Not replayed yet: `make bench PLAN=replay`.", ""]
    return lines


def write_report(speed_json: Path, out: Path) -> Path:
    """Rewrite ``out`` from the measurements beside ``speed_json``, keeping the notes below the marker."""
    data = json.loads(speed_json.read_text()) if speed_json.exists() else {"measurements": {}}
    lines = [
        "# Benchmarks",
        "",
        "Speed and memory are goals measured here, never asserted in tests; every figure is a median with its "
        "range, and ratios compare numbers measured in one run. Regenerated by `make bench` (speed), "
        "`make bench PLAN=table` and `make bench PLAN=replay` (search strategies).",
        "",
        *search_section(speed_json.parent),
        *speed_section(data),
    ]
    previous = out.read_text() if out.exists() else ""
    if NOTES_MARKER in previous:
        lines += ["", NOTES_MARKER + previous.split(NOTES_MARKER, 1)[1].rstrip("\n")]
    write_text_atomic(out, "\n".join(lines).rstrip("\n") + "\n")
    return out
