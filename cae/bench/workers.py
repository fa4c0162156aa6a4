"""Workers on one machine: 1 worker with all the cores' threads vs 2 workers with half each.

The 1-worker arm is the search-efficiency section's TPE + default-pruner run of the same seed (one
process, TensorFlow on every core). The 2-worker arm runs the same study settings with
``workers: 2`` through ``cae search`` (``cae.bench.process``), which spawns the workers.
"""

from __future__ import annotations

import os
from typing import Any

from cae.bench.plan import PRUNER_STRATEGY, Plan
from cae.bench.process import SearchProcess
from cae.bench.store import Store
from cae.bench.studies import BASE, BenchEnv, search_config, study_name
from cae.paths import project_root
from cae.search_config import load_search

WORKERS = 2


def default_strategy() -> str:
    """TPE with the pruner ``make search`` uses by default (experiments/search.yaml)."""
    return PRUNER_STRATEGY[load_search(project_root() / BASE).pruner.name]


def run_workers(plan: Plan, env: BenchEnv, source: str | None, seed: int, attempt: int) -> dict[str, Any]:
    strategy = default_strategy()
    study = study_name(plan, strategy, seed, attempt, workers=WORKERS)
    cfg = search_config(plan, env, source, strategy, seed, study, workers=WORKERS)
    threads = max(1, (os.cpu_count() or 1) // WORKERS)  # what spawn_workers gives each (CAE_THREADS)
    search = SearchProcess(env, cfg, attempt, strategy=strategy, threads=threads)  # `threads`: recorded only
    try:
        return search.result()
    except KeyboardInterrupt:
        search.stop()
        raise


def measure_workers(plan: Plan, env: BenchEnv, source: str | None, store: Store, host: str) -> None:
    for seed in plan.seeds[: plan.worker_seeds]:
        key = f"workers/w{WORKERS}/seed{seed}"
        store.get_or_measure(key, lambda sd=seed, k=key: run_workers(plan, env, source, sd, store.new_attempt(k)), host)
