"""The numbers the benchmark report states, computed from raw measurements (no training, no I/O).

A search run is its list of trials (``start``/``end`` seconds since its first trial started,
``state``, ``value`` = best validation MSE of a COMPLETE trial). "Best so far" counts COMPLETE
trials only: that is what a search returns as its best.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INF = math.inf
FRACTIONS = (0.25, 0.5, 1.0)  # of random search's median wall time
GOAL_RATIO = 0.25  # TPE + the default pruner reaches random's final best in <= 25 % of random's time
Trials = Sequence[Mapping[str, Any]]


def best_so_far(trials: Trials, t: float = INF) -> float:
    values = [tr["value"] for tr in trials if tr["state"] == "COMPLETE" and tr["value"] is not None and tr["end"] <= t]
    return min(values, default=INF)


def time_to_target(trials: Trials, target: float) -> float:
    """Seconds from the first trial's start to the end of the first COMPLETE trial at or below ``target``."""
    return min(
        (tr["end"] for tr in trials if tr["state"] == "COMPLETE" and tr["value"] is not None and tr["value"] <= target),
        default=INF,
    )


def wall_time(trials: Trials) -> float:
    return max((tr["end"] for tr in trials), default=0.0)


def finished(trials: Trials) -> int:
    return sum(tr["state"] in ("COMPLETE", "PRUNED") for tr in trials)


def trials_per_hour(trials: Trials) -> float:
    span = wall_time(trials) - min((tr["start"] for tr in trials), default=0.0)
    return finished(trials) / span * 3600 if span > 0 else 0.0


def median(values: Sequence[float]) -> float:
    """The median, infinite when more than half are (never reached stays never reached)."""
    return statistics.median(values) if values else math.nan


def target_of(random_runs: Sequence[Trials]) -> float:
    """Random search's final best, median over seeds; with an even count the worse middle value,
    so that at least half of random's own seeds reach it."""
    return statistics.median_high([best_so_far(r) for r in random_runs]) if random_runs else math.nan


@dataclass(frozen=True)
class StrategyRow:
    ratios: list[float]  # per seed: time to target / random's median time to target
    reached: int
    seeds: int
    best_at: list[float]  # median best at FRACTIONS of random's median wall time
    final: float  # median final best
    wall: float  # median wall time of a run, seconds
    pruned: float  # median share of pruned trials
    trials: float  # median finished trials per run

    @property
    def ratio(self) -> float:
        return median(self.ratios)


def strategy_row(runs: Sequence[Trials], target: float, random_ttt: float, random_wall: float) -> StrategyRow:
    usable = math.isfinite(random_ttt) and random_ttt > 0
    ratios = [time_to_target(r, target) / random_ttt if usable else math.nan for r in runs]
    return StrategyRow(
        ratios=ratios,
        reached=sum(math.isfinite(x) for x in ratios),
        seeds=len(runs),
        best_at=[median([best_so_far(r, f * random_wall) for r in runs]) for f in FRACTIONS],
        final=median([best_so_far(r) for r in runs]),
        wall=median([wall_time(r) for r in runs]),
        pruned=median([sum(t["state"] == "PRUNED" for t in r) / max(1, len(r)) for r in runs]),
        trials=median([finished(r) for r in runs]),
    )


@dataclass(frozen=True)
class Efficiency:
    target: float
    random_ttt: float  # random's median time to the target, seconds
    random_wall: float  # random's median wall time, seconds
    rows: dict[str, StrategyRow]


def efficiency(runs: Mapping[str, Sequence[Trials]]) -> Efficiency | None:
    """Every strategy against random search; None until random search has a run."""
    random_runs = runs.get("random") or []
    if not random_runs:
        return None
    target = target_of(random_runs)
    random_ttt = median([time_to_target(r, target) for r in random_runs])
    random_wall = median([wall_time(r) for r in random_runs])
    rows = {name: strategy_row(rs, target, random_ttt, random_wall) for name, rs in runs.items() if rs}
    return Efficiency(target, random_ttt, random_wall, rows)


def goal_verdict(row: StrategyRow | None) -> str:
    if row is None:
        return "not measured"
    return "met" if row.ratio <= GOAL_RATIO else "missed"


def printed_ratio(row: StrategyRow) -> float:
    """The median ratio in whole percent, as the report prints it: equal values are a tie."""
    return row.ratio if math.isinf(row.ratio) else round(row.ratio * 100)


def fastest(eff: Efficiency, names: Sequence[str]) -> str | None:
    """The strategy among ``names`` with the lowest median ratio as the report prints it (whole percent).

    Ratios that print alike differ by seconds on one seed, well inside the spread over seeds, so they
    are a tie: broken by more seeds reached, then the lower best at random's median wall time, then
    the lower final best.
    """
    candidates = [n for n in names if n in eff.rows]

    def key(n: str) -> tuple[float, int, float, float]:
        row = eff.rows[n]
        return printed_ratio(row), -row.reached, row.best_at[-1], row.final

    return min(candidates, key=key, default=None)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    from scipy.stats import rankdata

    return [float(r) for r in rankdata(values)]


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation; nan for fewer than 3 pairs or no spread."""
    from scipy.stats import spearmanr

    if len(xs) != len(ys) or len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def agreement(rho: float) -> str:
    if math.isnan(rho):
        return "cannot be judged"
    rho = round(rho, 6)  # as printed: 0.7999999 from the float arithmetic is the 0.80 the report shows
    return "agree strongly" if rho >= 0.8 else "agree moderately" if rho >= 0.5 else "agree weakly or not at all"


@dataclass(frozen=True)
class WorkersComparison:
    rate_ratio: float  # trials per hour, 2 workers / 1 worker (medians)
    ttt_one: float  # median time to target, seconds
    ttt_two: float


def workers_recommendation(cmp: WorkersComparison, threads: int, cores: int) -> str:
    """One sentence from the numbers: which layout to run on a machine like this one."""
    unreached = math.isinf(cmp.ttt_one) and math.isinf(cmp.ttt_two)
    sooner = cmp.ttt_two < cmp.ttt_one
    minutes = "" if unreached else f" (time to target {_min(cmp.ttt_two)} vs {_min(cmp.ttt_one)} min)"
    head = f"Recommendation for a {cores}-core machine like this one:"
    if cmp.rate_ratio >= 1.05 and (sooner or unreached):
        return (
            f"{head} `WORKERS=2` ({threads} thread{'s' if threads > 1 else ''} each): two workers finished "
            f"{cmp.rate_ratio:.2f}× the trials per hour{minutes}."
        )
    if cmp.rate_ratio >= 1.05:
        why = f"finished {cmp.rate_ratio:.2f}× the trials per hour but reached the target later{minutes}"
    elif cmp.rate_ratio > 0.95:
        why = f"differ by less than 5 % in trials per hour ({cmp.rate_ratio:.2f}×){minutes}, not worth a second process"
    else:
        why = f"finished only {cmp.rate_ratio:.2f}× the trials per hour{minutes}"
    return f"{head} one worker (the default); two workers {why}."


def _min(seconds: float) -> str:
    return f"{seconds / 60:.1f}" if math.isfinite(seconds) else "never"
