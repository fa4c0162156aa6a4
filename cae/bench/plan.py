"""What `make bench` measures: the full run's settings, the quick smoke run's, and the strategies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Strategy:
    label: str  # as the report names it
    overrides: dict[str, Any]  # SearchConfig keys on top of experiments/search.yaml


# The same space, budget and proxy task for all; only the sampler / pruner / engine differ.
STRATEGIES: dict[str, Strategy] = {
    "random": Strategy("random, no pruning", {"sampler.name": "random", "pruner.name": "none"}),
    "tpe": Strategy("TPE, no pruning", {"sampler.name": "tpe", "pruner.name": "none"}),
    "tpe+median": Strategy("TPE + median", {"sampler.name": "tpe", "pruner.name": "median"}),
    "tpe+sha": Strategy("TPE + successive halving", {"sampler.name": "tpe", "pruner.name": "successive_halving"}),
    "tpe+hyperband": Strategy("TPE + Hyperband", {"sampler.name": "tpe", "pruner.name": "hyperband"}),
    "kt-hyperband": Strategy("keras-tuner Hyperband", {"engine": "keras-tuner", "tuner": "hyperband"}),
}
PRUNER_STRATEGY = {"median": "tpe+median", "successive_halving": "tpe+sha", "hyperband": "tpe+hyperband", "none": "tpe"}
VARIANTS: dict[str, dict[str, Any]] = {  # throughput: config keys of each timed variant
    "harness": {},
    "harness + XLA": {"train.jit_compile": True},
    "harness + mixed_float16": {"train.precision": "mixed_float16"},
    "harness + mixed_bfloat16": {"train.precision": "mixed_bfloat16"},
}
BARE = "bare fit"  # model.fit on NumPy arrays, the seed notebook's way: the comparison


@dataclass(frozen=True)
class Plan:
    mode: str  # "full" or "quick": names results/bench/<mode>.json
    # Throughput: training images per timed epoch, batch sizes, timed epochs after the warm-up one.
    images: int
    batch_sizes: tuple[int, ...]
    repeats: int
    # The proxy task every search runs: a training subset (and N/8 validation images), epochs per
    # trial, finished trials per run, sampler seeds per strategy.
    subset: int
    epochs: int
    trials: int
    seeds: tuple[int, ...]
    # Fidelity: configurations drawn from the space, trained for `epochs` and `epochs * factor`.
    fidelity_configs: int
    fidelity_factor: int
    # Workers: the first `worker_seeds` seeds run again with 2 worker processes.
    worker_seeds: int
    # Search efficiency: the strategies compared, and how many searches run at a time. Each search runs
    # in a fresh `cae search` process with cores / lanes TensorFlow threads: in one long process every
    # trial slowed the next (TensorFlow keeps each trained model's traced graphs; garbage collection
    # between trials grew from ~0.4 s to ~1 s, measured), which penalised the strategies that ran last.
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    lanes: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


# Sized from a QUICK run and a 10-trial calibration of this proxy (mean ~29 s per trial at a load average
# of 4–6, ~17 CPU-seconds): 6 strategies × 5 seeds × 30 trials of 5 epochs on 1,000 images is ~3.5–4 h
# on an otherwise idle 2-core CPU (~7 h at that load). Epochs match the default study's 5.
FULL = Plan(
    "full",
    images=12000,
    batch_sizes=(32, 128, 512),
    repeats=3,
    subset=1000,
    epochs=5,
    trials=30,
    seeds=(0, 1, 2, 3, 4),
    fidelity_configs=8,
    fidelity_factor=4,
    worker_seeds=3,
)
# The pruner choice alone (`make bench PLAN=pruners`, 1.2 h on 2 cores): section 1's proxy and seeds for
# random search and TPE with each pruner, two searches at a time with one thread each. A trial trains
# ~1.4× slower that way than alone with both threads (measured on the same configurations), so this takes
# ~70 % of the one-at-a-time wall time; every strategy runs under the same condition. Nothing else is measured.
PRUNERS = Plan(
    "pruners",
    images=0,
    batch_sizes=(),
    repeats=0,
    subset=FULL.subset,
    epochs=FULL.epochs,
    trials=FULL.trials,
    seeds=FULL.seeds,
    fidelity_configs=0,
    fidelity_factor=FULL.fidelity_factor,
    worker_seeds=0,
    strategies=("random", "tpe+median", "tpe+sha", "tpe+hyperband"),
    lanes=2,
)
# Every section with tiny settings, in minutes: a smoke test of the code, not a measurement.
# One seed: each search costs ~15 s of set-up and scoring besides its trials, on a shared 2-core CPU.
QUICK = Plan(
    "quick",
    images=1000,
    batch_sizes=(128,),
    repeats=1,
    subset=200,
    epochs=2,
    trials=3,
    seeds=(0,),
    fidelity_configs=3,
    fidelity_factor=2,
    worker_seeds=1,
)
PLANS = {plan.mode: plan for plan in (FULL, QUICK, PRUNERS)}


def missing_measurements(plan: dict[str, Any], keys: set[str]) -> list[str]:
    """What ``plan`` (as stored in the raw JSON) asks for and ``keys`` lack, counted per section."""
    seeds = plan["seeds"]
    planned = {
        "search runs": [f"search/{s}/seed{n}" for s in plan.get("strategies", STRATEGIES) for n in seeds],
        "fidelity configurations": [f"fidelity/config{i}" for i in range(plan["fidelity_configs"])],
        "2-worker runs": [f"workers/w2/seed{n}" for n in seeds[: plan["worker_seeds"]]],
    }
    return [
        f"{sum(k not in keys for k in want)} of {len(want)} {what}"
        for what, want in planned.items()
        if any(k not in keys for k in want)
    ]


def process_sentence(plan: dict[str, Any], cores: int) -> str:
    """How the runs of ``plan`` (as stored in the raw JSON) were run, for the report."""
    if "lanes" not in plan:  # files measured before searches had processes of their own
        return "All runs ran one after another in the benchmark's own process (a bias, see the notes)."
    lanes = plan["lanes"]
    return (
        f"Each run had a fresh `cae search` process, {lanes} at a time with {max(1, cores // lanes)} "
        "TensorFlow thread(s) each."
        if lanes > 1
        else "Each run had a fresh `cae search` process with TensorFlow on every core, one at a time."
    )
