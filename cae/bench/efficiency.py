"""Search efficiency: every strategy on the same space, budget and proxy task, over sampler seeds.

Seeds are the outer loop, so a benchmark stopped part-way has every strategy measured on the same
seeds so far. Each search runs in this process through ``run_search`` / ``run_tuner``; one killed
half-way is run again as a new attempt under a new study name (see ``cae.bench.store``).
"""

from __future__ import annotations

import time
from typing import Any

from cae.bench.plan import STRATEGIES, Plan
from cae.bench.store import Store
from cae.bench.studies import BenchEnv, search_config, study_name, timeline


def run_study(plan: Plan, env: BenchEnv, source: str | None, strategy: str, seed: int, attempt: int) -> dict[str, Any]:
    """One search to ``plan.trials`` finished trials; its timeline and end-to-end wall time."""
    from cae.search.run import run_search
    from cae.search.tuner import run_tuner

    study = study_name(plan, strategy, seed, attempt)
    cfg = search_config(plan, env, source, strategy, seed, study)
    start = time.perf_counter()
    if cfg.engine == "keras-tuner":
        run_tuner(cfg, env.tracker)
    else:
        run_search(cfg, tracker=env.tracker)
    wall = time.perf_counter() - start  # includes loading data, the study's plots and scoring its best
    trials = timeline(env.tracker, study)
    done = sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    if done < plan.trials:  # the report shows each strategy's count; say it here too, while it runs
        print(f"[bench] warning: {study} ended with {done} finished trials, fewer than {plan.trials}", flush=True)
    return {"study": study, "attempt": attempt, "trials": trials, "wall_seconds": wall}


def measure_efficiency(plan: Plan, env: BenchEnv, source: str | None, store: Store, host: str) -> None:
    for seed in plan.seeds:
        for strategy in STRATEGIES:
            key = f"search/{strategy}/seed{seed}"
            store.get_or_measure(
                key, lambda s=strategy, sd=seed, k=key: run_study(plan, env, source, s, sd, store.new_attempt(k)),
                host,
            )  # fmt: skip
