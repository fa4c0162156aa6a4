"""Search strategies replayed over the learning-curve table (`make bench PLAN=replay`), many seeds in minutes.

Each strategy (a sampler, a pruner, with or without the study's enqueued prior) runs through Optuna's
own ask/tell with the study's own sampler and pruner (:mod:`cae.search.study`): a sampled point is
looked up in the table (``results/bench/curves.csv``, :mod:`cae.bench.table`), its recorded epochs
are reported to the pruner one by one, and a simulated clock advances by each epoch's recorded
seconds. This is Syne Tune's and LCBench's tabular simulation.

**The lookup is the nearest recorded configuration** (each parameter scaled to [0, 1] over its range,
log-scaled where the space says so; a categorical one counts 1 when it differs). Its bias: the
replayed space is the table's configurations only (a Voronoi cell each), so a sampler that would
find a better point between them is not rewarded for it, and one that models a smooth landscape
sees plateaus. Where a configuration was trained twice, each replayed trial takes one of its curves
at random (seeded), so the training noise is part of the replay.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cae.schema import with_overrides
from cae.search_config import SearchConfig
from cae.space import Param, SearchSpace


@dataclass(frozen=True)
class Curve:
    val: tuple[float, ...]  # validation MSE after each epoch
    seconds: tuple[float, ...]  # each epoch's wall time


@dataclass
class Table:
    """The recorded configurations and their curves, ready for lookup."""

    params: dict[str, dict[str, Any]]  # config id -> its parameters (the space's keys)
    curves: dict[str, list[Curve]]  # config id -> one curve per recorded seed
    space: SearchSpace
    _matrix: np.ndarray = field(init=False, repr=False)
    _ids: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ids = sorted(self.params)
        self._matrix = np.array([encode(self.space, self.params[i]) for i in self._ids])

    def nearest(self, params: dict[str, Any]) -> str:
        """The recorded configuration closest to ``params`` (ties: the first id)."""
        distance = ((self._matrix - encode(self.space, params)) ** 2).sum(axis=1)
        return self._ids[int(np.argmin(distance))]

    @property
    def epochs(self) -> int:
        return min(len(c.val) for curves in self.curves.values() for c in curves)


def encode(space: SearchSpace, params: dict[str, Any]) -> np.ndarray:
    """``params`` as numbers in [0, 1] per parameter (one column per categorical choice, scaled so a
    differing choice counts 1 in the squared distance); an inactive parameter is all zeros."""
    out: list[float] = []
    for p in space.params:
        value = params.get(p.name)
        if p.kind == "categorical":
            out += [math.sqrt(0.5) * (value == c) for c in p.choices]
        else:
            out.append(_scaled(p, value) if value is not None else 0.0)
    return np.array(out)


def _scaled(p: Param, value: float) -> float:
    low, high = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return 0.0 if high == low else (value - low) / (high - low)


def table_from_rows(rows: Sequence[dict[str, Any]], space: SearchSpace) -> Table:
    """A :class:`Table` from the CSV's rows (:func:`cae.bench.table.read_rows`)."""
    params: dict[str, dict[str, Any]] = {}
    epochs: dict[tuple[str, int], dict[int, tuple[float, float]]] = {}
    for r in rows:
        params.setdefault(r["config"], {k: r[k] for k in space.names if k in r and r[k] != ""})
        epochs.setdefault((r["config"], r["seed"]), {})[r["epoch"]] = (r["val_mse"], r["seconds"])
    curves: dict[str, list[Curve]] = {}
    for (config, _seed), by_epoch in sorted(epochs.items()):
        ordered = [by_epoch[e] for e in sorted(by_epoch)]
        seconds = [s for _, s in ordered]
        known = [s for s in seconds if math.isfinite(s)]
        typical = float(np.median(known)) if known else 0.0  # an epoch whose time was lost (a kill) costs the median
        curves.setdefault(config, []).append(
            Curve(tuple(v for v, _ in ordered), tuple(s if math.isfinite(s) else typical for s in seconds))
        )
    return Table(params, curves, space)


@dataclass(frozen=True)
class Strategy:
    sampler: str  # random, tpe, gp
    pruner: str  # none, median, successive_halving, hyperband
    prior: bool  # the study's enqueued points run first

    @property
    def name(self) -> str:
        return f"{self.sampler}+{self.pruner}" + ("+prior" if self.prior else "")


@dataclass(frozen=True)
class Trial:
    start: float  # simulated seconds; the enqueued points' time is not counted (conventions)
    end: float
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None  # best validation MSE of a COMPLETE trial
    epochs: int
    config: str  # the table configuration it was looked up as
    enqueued: bool


def replay(
    strategy: Strategy, seed: int, table: Table, cfg: SearchConfig, trials: int, prior: Sequence[dict[str, Any]] = ()
) -> list[Trial]:
    """One search of ``trials`` finished trials by ``strategy`` over ``table``, sampler seed ``seed``.

    ``cfg`` is the study whose sampler and pruner settings the strategy overrides (the same
    :func:`cae.search.study.make_sampler` / ``make_pruner`` the real study uses); ``prior`` its enqueued points.
    """
    import optuna

    from cae.search.study import make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = with_overrides(
        cfg,
        {"sampler.name": strategy.sampler, "pruner.name": strategy.pruner, "experiment.train.epochs": table.epochs},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPSampler and group TPE are "experimental"
        study = optuna.create_study(  # a fixed name: Hyperband draws a trial's bracket from it
            study_name=f"replay-{strategy.name}-{seed}",
            sampler=make_sampler(cfg, seed, table.space.conditional),
            pruner=make_pruner(cfg),
            direction="minimize",
        )
    for point in prior if strategy.prior else ():
        study.enqueue_trial(point, user_attrs={"enqueued": True})
    rng = np.random.default_rng(seed)
    clock, out = 0.0, []
    # A table whose curves all diverge would never finish a trial: at most 10× the budget is tried.
    while sum(t.state in ("COMPLETE", "PRUNED") for t in out) < trials and len(out) < 10 * trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask()
            params = table.space.sample_optuna(trial)
        enqueued = bool(trial.user_attrs.get("enqueued"))
        config = table.nearest(params)
        curves = table.curves[config]
        curve = curves[int(rng.integers(len(curves)))]
        start, state, seen = clock, "COMPLETE", []
        for epoch, (val, seconds) in enumerate(zip(curve.val, curve.seconds, strict=True)):
            if not enqueued:
                clock += seconds
            if not math.isfinite(val):
                state = "FAIL"
                break
            seen.append(val)
            trial.report(val, epoch)
            if epoch + 1 < len(curve.val) and trial.should_prune():  # never at the last epoch, as a study
                state = "PRUNED"
                break
        value = min(seen) if state == "COMPLETE" else None
        if state == "COMPLETE":
            study.tell(trial, value)
        else:
            study.tell(trial, state=getattr(optuna.trial.TrialState, state))
        out.append(Trial(start, clock, state, value, len(seen), config, enqueued))
    return out


# --------------------------------------------------------------------------------------------
# What a set of replayed runs says


def best_so_far(run: Sequence[Trial], t: float = math.inf) -> float:
    """The best validation MSE of the run's own (not enqueued) COMPLETE trials ended by ``t``."""
    values = [tr.value for tr in run if tr.state == "COMPLETE" and not tr.enqueued and tr.end <= t]
    return min((v for v in values if v is not None), default=math.inf)


def time_to_target(run: Sequence[Trial], target: float) -> float:
    """Simulated seconds until the run's own trials first reach ``target`` (inf: never)."""
    return min(
        (
            tr.end
            for tr in run
            if tr.state == "COMPLETE" and not tr.enqueued and tr.value is not None and tr.value <= target
        ),
        default=math.inf,
    )


def target_of(random_runs: Sequence[Sequence[Trial]]) -> float:
    """Unpruned random search's final best, median over its seeds (the worse middle one for an even count)."""
    finals = sorted(best_so_far(r) for r in random_runs)
    return finals[len(finals) // 2]


def median(values: Sequence[float]) -> float:
    """The median; infinite when more than half are (never reached stays never reached)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    if n % 2:
        return ordered[n // 2]
    low, high = ordered[n // 2 - 1], ordered[n // 2]
    return high if math.isinf(high) else (low + high) / 2


def ratio_interval(
    times: Sequence[float], baseline: Sequence[float], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Median of ``times`` over the median of ``baseline`` (finite), with a 95 % bootstrap interval
    (seeds resampled in pairs: both numbers of a seed stay together; never reached stays infinite)."""
    a, b = np.asarray(times, dtype=float), np.asarray(baseline, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(a), size=(draws, len(a)))
    ratios = np.array([median(list(a[p])) / median(list(b[p])) for p in picks])
    low, high = np.quantile(ratios, [0.025, 0.975], method="inverted_cdf")  # no interpolation into infinity
    return median(list(a)) / median(list(b)), float(low), float(high)


def paired_test(times: Sequence[float], baseline: Sequence[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on paired times (never = slower than any time)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(times, dtype=float), np.asarray(baseline, dtype=float)
    finite = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    cap = 2 * (finite.max() if finite.size else 1.0)  # a rank test only needs "later than all": any value above
    a, b = np.where(np.isfinite(a), a, cap), np.where(np.isfinite(b), b, cap)
    if np.all(a == b):
        return 1.0
    return float(wilcoxon(a, b, zero_method="zsplit").pvalue)


def reached_by(runs: Sequence[Sequence[Trial]], target: float, grid: np.ndarray) -> np.ndarray:
    """The fraction of runs that reached ``target`` by each time of ``grid``."""
    times = np.array([time_to_target(r, target) for r in runs])
    return np.array([(times <= t).mean() for t in grid])


def progress(runs: Sequence[Sequence[Trial]], grid: np.ndarray) -> np.ndarray:
    """Best-so-far validation MSE of each run at each time of ``grid``: (runs, times)."""
    return np.array([[best_so_far(r, t) for t in grid] for r in runs])


def margin_band(runs: Sequence[Sequence[Trial]], grid: np.ndarray, pca: float) -> np.ndarray:
    """Best-so-far margin over PCA (dB) at each time of ``grid``: its quartiles over ``runs``, (3, times).

    Before any run's first trial ends a column has no value: left NaN (blank in a plot), not a warning.
    """
    margin = margins(progress(runs, grid), pca)
    seen = np.isfinite(margin).any(axis=0)
    band = np.full((3, grid.size), np.nan)
    band[:, seen] = np.nanquantile(margin[:, seen], [0.25, 0.5, 0.75], axis=0)
    return band


def margins(mse: np.ndarray, pca: float) -> np.ndarray:
    """Validation MSE as dB over PCA (images in [0, 1]); NaN where no trial has finished (MSE inf)."""
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(mse), 10 * np.log10(1 / mse) - pca, np.nan)
