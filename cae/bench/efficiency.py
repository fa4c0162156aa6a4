"""Search efficiency: the plan's strategies on the same space, budget and proxy task, over sampler seeds.

Seeds are the outer loop, so a benchmark stopped part-way has every strategy measured on the same
seeds so far. Each search runs in a fresh ``cae search`` process (``cae.bench.process``), ``plan.lanes``
of them at a time with cores / lanes threads each; one killed half-way is run again as a new attempt
under a new study name (see ``cae.bench.store``).
"""

from __future__ import annotations

import os
import time

from cae.bench.plan import Plan
from cae.bench.process import SearchProcess, stop_leftovers
from cae.bench.store import Store
from cae.bench.studies import BenchEnv, search_config, study_name


def start_study(plan: Plan, env: BenchEnv, source: str | None, strategy: str, seed: int, attempt: int) -> SearchProcess:
    """One search to ``plan.trials`` finished trials, started in its own process."""
    study = study_name(plan, strategy, seed, attempt)
    cfg = search_config(plan, env, source, strategy, seed, study)
    # One at a time keeps the benchmark's own threads (all cores unless CAE_THREADS says otherwise).
    extra = {"threads": max(1, (os.cpu_count() or 1) // plan.lanes)} if plan.lanes > 1 else {}
    return SearchProcess(env, cfg, attempt, **extra)


def measure_efficiency(plan: Plan, env: BenchEnv, source: str | None, store: Store, host: str) -> None:
    stop_leftovers(env.root)
    todo = [(f"search/{s}/seed{seed}", s, seed) for seed in plan.seeds for s in plan.strategies]
    todo = [job for job in todo if store.result(job[0]) is None]
    running: dict[str, SearchProcess] = {}
    try:
        while todo or running:
            while todo and len(running) < plan.lanes:
                key, strategy, seed = todo.pop(0)
                store.begin(key)
                running[key] = start_study(plan, env, source, strategy, seed, store.new_attempt(key))
            done = [key for key, search in running.items() if search.poll()]
            for key in done:
                search = running.pop(key)
                result = search.result()
                finished = sum(t["state"] in ("COMPLETE", "PRUNED") for t in result["trials"])
                if finished < plan.trials:  # the report shows each strategy's count; say it here too, while it runs
                    print(
                        f"[bench] warning: {search.study} ended with {finished} finished trials, fewer than "
                        f"{plan.trials}",
                        flush=True,
                    )
                store.put(key, result, search.wall or 0.0, host)
            if not done:
                time.sleep(1)
    finally:  # an error or Ctrl-C: no search keeps running behind the benchmark's back
        for search in running.values():
            search.stop()
