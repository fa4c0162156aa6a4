"""`make bench PLAN=replay`: every strategy replayed over the learning-curve table, then its report.

``results/bench/replay.json`` keeps every replayed trial (a strategy is replayed again only when the
table, the study's settings or the seeds change); ``results/bench/replay.md``, its figures and
``epoch_fates.json`` (where each strategy's trials stopped: what a study's first estimate reads) are
written from it: best-so-far margin over PCA against simulated hours (median and interquartile band
over seeds), the fraction of seeds that reached the target by each time, and each strategy's median
time-to-target as a ratio of random search's, with a bootstrap 95 % interval and a paired test.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cae.bench.figures import plot_live, plot_replay
from cae.bench.live import live_lines, read_live, record_live
from cae.bench.replay import (
    Strategy,
    Table,
    Trial,
    best_so_far,
    median,
    paired_test,
    ratio_interval,
    replay,
    table_from_rows,
    target_of,
    time_to_target,
)
from cae.bench.table import BASE, read_rows, table_paths
from cae.metrics import psnr_from_mse
from cae.paths import resolve, write_text_atomic
from cae.schema import with_overrides
from cae.search.estimate import FATES
from cae.search_config import SearchConfig, load_search
from cae.space import load_space

SAMPLERS = ("random", "tpe", "gp")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
BASELINE = Strategy("random", "none", False)  # unpruned random search: the target and the time to beat
SEEDS = 50
GOAL = 0.25  # the default strategy reaches random's final best in <= 25 % of random's time


def strategies(gp: bool) -> list[Strategy]:
    samplers = [s for s in SAMPLERS if gp or s != "gp"]
    return [Strategy(s, p, prior) for s in samplers for p in PRUNERS for prior in (False, True)]


def gp_available() -> bool:
    """Optuna's GPSampler needs PyTorch, which the harness does not install (pip install torch)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def run_replay(
    folder: Path | None = None, base: str = BASE, seeds: int = SEEDS, live: tuple[str, str] | None = None
) -> Path:
    """Replay what ``replay.json`` lacks, then write ``replay.md``; returns its path. ``live``: (study,
    storage URL) of a live study on the table's settings, recorded into ``live.json`` to show beside it."""
    cfg = load_search(resolve(base))
    csv_path, meta_path = table_paths(folder)
    rows = read_rows(csv_path)
    if not rows:
        raise_missing(csv_path)
    meta = json.loads(meta_path.read_text())
    space = load_space(resolve(cfg.space), cfg.experiment)
    table = table_from_rows(rows, space)
    prior = [space.point(with_overrides(cfg.experiment, change)) for change in cfg.enqueue]
    out = csv_path.parent
    if live:
        record_live(*live, meta, out / "live.json")
    # Replayed again only when what a replay depends on changes: the table, the budget, the seeds, the prior,
    # the sampler's and pruner's settings (each strategy sets their names).
    settings = [{**asdict(c), "name": None} for c in (cfg.sampler, cfg.pruner)]
    key = hashlib.sha256(
        json.dumps([_digest(csv_path), cfg.trials, seeds, prior, settings], default=str).encode()
    ).hexdigest()[:12]
    raw_path = out / "replay.json"
    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    if raw.get("key") != key:
        raw = {"key": key, "runs": {}, "seconds": {}}
    todo = [s for s in strategies(gp_available()) if s.name not in raw["runs"]]
    # Unpruned GPSampler takes over an hour on 2 cores (a GP fit per trial): it goes last, and a report
    # follows every strategy, so that the others' answer neither waits on it nor is lost if it is stopped.
    todo.sort(key=lambda s: s.sampler == "gp" and s.pruner == "none")
    for n, strategy in enumerate(todo, 1):
        started = time.perf_counter()
        runs = [replay(strategy, seed, table, cfg, cfg.trials, prior) for seed in range(seeds)]
        raw["runs"][strategy.name] = [[asdict(t) for t in run] for run in runs]
        raw["seconds"][strategy.name] = round(time.perf_counter() - started, 1)
        write_text_atomic(raw_path, json.dumps(raw, separators=(",", ":")) + "\n")
        print(
            f"[replay] {n}/{len(todo)} {strategy.name}: {seeds} seeds in {raw['seconds'][strategy.name]:.0f} s",
            flush=True,
        )
        _report(out, raw, table, meta, cfg)
    return _report(out, raw, table, meta, cfg)


def _report(out: Path, raw: dict[str, Any], table: Table, meta: dict[str, Any], cfg: SearchConfig) -> Path:
    runs = {name: [[Trial(**t) for t in run] for run in seeds_] for name, seeds_ in raw["runs"].items()}
    return write_report(out, runs, table, meta, cfg, raw["seconds"])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def raise_missing(path: Path) -> None:
    from cae.errors import CAEError

    raise CAEError(f"{path.name} has no rows yet: record the table first with `make bench PLAN=table` (hours)")


def summarize(runs: dict[str, list[list[Trial]]], target: float) -> dict[str, dict[str, Any]]:
    """Per strategy: time-to-target per seed; its median as a share of random search's time (the median
    wall time of a whole random run, in which random reaches its final best), with the interval; the
    paired test against random's own time-to-target."""
    baseline = [time_to_target(r, target) for r in runs[BASELINE.name]]
    random_time = [max((t.end for t in r), default=0.0) for r in runs[BASELINE.name]]
    rows = {}
    for name, seeds in runs.items():
        times = [time_to_target(r, target) for r in seeds]
        ratio, low, high = ratio_interval(times, random_time)
        rows[name] = {
            "times": times,
            "median_hours": median(times) / 3600,
            "reached": sum(math.isfinite(t) for t in times),
            "ratio": ratio,
            "low": low,
            "high": high,
            "p": paired_test(times, baseline) if name != BASELINE.name else math.nan,
            "final": median([best_so_far(r) for r in seeds]),
            "pruned": float(np.median([sum(t.state == "PRUNED" for t in r) / max(1, len(r)) for r in seeds])),
            "hours": float(np.median([max((t.end for t in r), default=0.0) for r in seeds])) / 3600,
        }
    return rows


def epoch_fates(runs: dict[str, list[list[Trial]]], epochs: int) -> dict[str, dict[str, float]]:
    """Per strategy, the share of its replayed trials (all seeds) stopped at each epoch, and ``complete``."""
    fates = {}
    for name, seeds in runs.items():
        stops = Counter("complete" if t.epochs >= epochs else str(t.epochs) for run in seeds for t in run)
        total = sum(stops.values())
        order = sorted(stops, key=lambda at: math.inf if at == "complete" else int(at))
        fates[name] = {at: round(stops[at] / total, 4) for at in order}
    return fates


def chosen(rows: dict[str, dict[str, Any]]) -> str:
    """The strategy that reaches the target soonest (median over seeds); ties: the narrower interval's top."""
    return min(
        rows, key=lambda n: (rows[n]["ratio"] if not math.isnan(rows[n]["ratio"]) else math.inf, rows[n]["high"])
    )


def write_report(
    out: Path,
    runs: dict[str, list[list[Trial]]],
    table: Table,
    meta: dict[str, Any],
    cfg: SearchConfig,
    seconds: dict[str, float],
) -> Path:
    target = target_of(runs[BASELINE.name])
    rows = summarize(runs, target)
    best = chosen(rows)
    pca = float(meta["pca_val_psnr"])
    horizon = max(max((t.end for t in r), default=0.0) for seeds in runs.values() for r in seeds)
    grid = np.linspace(0, horizon, 200)
    shown = [BASELINE.name, "tpe+none", best, *(n for n in ("tpe+hyperband", "gp+none") if n in runs)]
    shown = list(dict.fromkeys(n for n in shown if n in runs))
    figures = plot_replay(out, runs, shown, grid, target, pca)
    n_seeds = len(runs[BASELINE.name])
    configs = len(table.params)
    repeats = sum(len(c) > 1 for c in table.curves.values())
    noise = _repeat_noise(table)
    lines = [
        "# Search strategies replayed over the learning-curve table",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `make bench PLAN=replay` from `results/bench/curves.csv` "
        f"({configs} configurations of `{meta['space']}` at {meta['code_values']} values, {repeats} of them trained "
        f"twice; {table.epochs} epochs each on {meta['split'][0]:,} training and {meta['split'][1]:,} validation "
        f"images of `{meta['data_file']}` (data_source `{meta['data_source']}`), seed {meta['split_seed']}; "
        f"recorded with `make bench PLAN=table` on {meta.get('host') or 'this machine'}).",
        "",
        "**How.** Each strategy runs Optuna's ask/tell with the study's own sampler and pruner "
        "(`cae/search/study.py`, `cae/search/pruning.py`) for "
        f"{cfg.trials} finished trials, {n_seeds} seeds each. A sampled point is looked up as the **nearest "
        "recorded configuration** (parameters scaled to [0, 1], log where the space says; a differing category "
        "counts 1); its recorded epochs go to the pruner one by one and a simulated clock advances by their "
        "recorded seconds. Bias of the lookup: the replayed space is the table's "
        f"{configs} configurations, so a sampler is not rewarded for finding a better point between them. "
        "The enqueued prior's own trials are off the clock and never count as reaching the target "
        "(conventions). Simulated hours are this table's: "
        f"{meta['split'][0]:,} images and {table.epochs} epochs a trial, not the study's full data and trial length.",
        "",
        f"**Target**: unpruned random search's final best, median over its {n_seeds} seeds: validation MSE "
        f"{target:.6f} = **{psnr_from_mse(target) - pca:+.3f} dB over PCA** ({pca:.2f} dB at "
        f"{meta['code_values']} values on these validation images). Training noise: two runs of one configuration "
        f"differ by {noise:.3f} dB (median over the {repeats} repeated configurations, best epoch).",
        "",
        f"Random search's time: the median simulated time of a whole unpruned random run "
        f"({_hours(float(np.median([max((t.end for t in r), default=0.0) for r in runs[BASELINE.name]])) / 3600)} h), "
        "in which it reaches its final best. The paired test (Wilcoxon signed-rank, per seed) compares each "
        "strategy's time-to-target with random search's own.",
        "",
        "| strategy | median time to target (simulated h) | seeds that reached it | share of random's time (95 % CI) | "
        "paired test p | median final best (dB over PCA) | pruned trials | replay time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["ratio"], kv[1]["high"])):
        mark = "**" if name == best else ""
        lines.append(
            f"| {mark}{name}{mark} | {_hours(r['median_hours'])} | {r['reached']}/{n_seeds} | "
            f"{_ratio(r['ratio'])} ({_ratio(r['low'])}–{_ratio(r['high'])}) | "
            f"{_p(r['p'])} | {psnr_from_mse(r['final']) - pca:+.3f} | "
            f"{r['pruned']:.0%} | {seconds.get(name, 0):.0f} s |"
        )
    verdict = rows[best]
    met = verdict["ratio"] <= GOAL
    planned = int(meta.get("plan", {}).get("configs", 0))
    # A table cut short replays a smaller space than the study searches: its verdict is not yet the default's.
    provisional = (
        f" (provisional: the table holds {configs} of its {planned} planned configurations; "
        "`make bench PLAN=table` resumes it)"
        if configs < planned
        else ""
    )
    default = cfg.strategy
    lines += [
        "",
        f"**Chosen{provisional}: `{best}`**, the strategy that reaches the target soonest: median "
        f"{_ratio(verdict['ratio'])}× random search's time (95 % CI {_ratio(verdict['low'])}–"
        f"{_ratio(verdict['high'])}, paired Wilcoxon p = {verdict['p']:.2g}). Goal ≤ {GOAL:.2f}×: "
        f"**{'met' if met else 'missed'}**; the interval "
        f"{'excludes' if verdict['high'] < 1 else 'does not exclude'} 1. The default study (`{BASE}`) runs "
        f"`{default}`" + ("." if default == best else ", not this pick (`results/README.md` says why)."),
        "",
        f"![best so far]({figures[0].name})",
        "",
        f"![reached]({figures[1].name})",
        "",
    ]
    for live in read_live(out / "live.json"):
        lines += live_lines(live, runs, target, pca, plot_live(out, live, runs, pca, target).name)
    missing = [s.name for s in strategies(gp=True) if s.name not in runs]
    if missing:
        why = (
            "GPSampler needs PyTorch (`.venv/bin/pip install torch`)"
            if not gp_available()
            else "the replay has not reached them yet"
        )
        lines += [
            f"Not replayed: {', '.join(f'`{n}`' for n in missing)} ({why}); `make bench PLAN=replay` adds them.",
            "",
        ]
    fates = {"table_epochs": table.epochs, "strategies": epoch_fates(runs, table.epochs)}
    write_text_atomic(out / FATES.name, json.dumps(fates, indent=1) + "\n")
    path = out / "replay.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def _hours(h: float) -> str:
    return "never" if math.isinf(h) else f"{h:.2f}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"


def _ratio(x: float) -> str:
    return "∞" if math.isinf(x) else "–" if math.isnan(x) else f"{x:.2f}"


def _repeat_noise(table: Table) -> float:
    gaps = [
        abs(psnr_from_mse(min(c[0].val)) - psnr_from_mse(min(c[1].val)))
        for c in table.curves.values()
        if len(c) > 1 and all(math.isfinite(min(x.val)) for x in c)
    ]
    return float(np.median(gaps)) if gaps else math.nan
