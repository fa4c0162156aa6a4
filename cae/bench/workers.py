"""Workers on one machine: 1 worker with all the cores' threads vs 2 workers with half each.

The 1-worker arm is the search-efficiency section's TPE + default-pruner run of the same seed (one
process, TensorFlow on every core). The 2-worker arm runs the same study settings with
``workers: 2`` through ``cae search`` in a process group of its own, so a benchmark killed while
it runs can stop its workers on resume (``run_search`` spawns them; a killed parent leaves them
running, and they would slow the next measurement down).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cae.bench.plan import PRUNER_STRATEGY, Plan
from cae.bench.store import Store
from cae.bench.studies import BASE, BenchEnv, search_config, study_name, timeline
from cae.config import load_search
from cae.errors import CAEError
from cae.paths import project_root
from cae.schema import to_dict

WORKERS = 2


def default_strategy() -> str:
    """TPE with the pruner ``make search`` uses by default (experiments/search.yaml)."""
    return PRUNER_STRATEGY[load_search(project_root() / BASE).pruner.name]


def stop_leftover(pidfile: Path) -> None:
    """Stop the process group of a 2-worker search a killed benchmark left running (if still ours)."""
    if not pidfile.exists():
        return
    pgid = int(pidfile.read_text().strip() or 0)
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        cmdline = b""
    if pgid > 1 and b"cae search" in cmdline:
        print(f"[bench] stopping the 2-worker search left running by a killed benchmark (group {pgid})", flush=True)
        os.killpg(pgid, signal.SIGTERM)  # the CLI ends its trials and workers cleanly on SIGTERM
        for _ in range(150):
            if not Path(f"/proc/{pgid}").exists():
                break
            time.sleep(1)
        else:
            os.killpg(pgid, signal.SIGKILL)
    pidfile.unlink()


def run_workers(plan: Plan, env: BenchEnv, source: str | None, seed: int, attempt: int) -> dict[str, Any]:
    strategy = default_strategy()
    study = study_name(plan, strategy, seed, attempt, workers=WORKERS)
    cfg = search_config(plan, env, source, strategy, seed, study, workers=WORKERS)
    config = env.root / f"{study}.yaml"
    config.write_text(yaml.safe_dump(to_dict(cfg)))
    pidfile = env.root / "workers.pid"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cae", "search", str(config)], start_new_session=True)
    pidfile.write_text(str(proc.pid))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        if proc.poll() is not None:
            pidfile.unlink(missing_ok=True)
    if code != 0:
        raise CAEError(f"the {WORKERS}-worker search {study} failed (exit {code}); see its log above")
    config.unlink()
    threads = max(1, (os.cpu_count() or 1) // WORKERS)  # what spawn_workers gives each (CAE_THREADS)
    return {"study": study, "attempt": attempt, "strategy": strategy, "threads": threads,
            "trials": timeline(env.tracker, study), "wall_seconds": time.perf_counter() - start}  # fmt: skip


def measure_workers(plan: Plan, env: BenchEnv, source: str | None, store: Store, host: str) -> None:
    stop_leftover(env.root / "workers.pid")
    for seed in plan.seeds[: plan.worker_seeds]:
        key = f"workers/w{WORKERS}/seed{seed}"
        store.get_or_measure(key, lambda sd=seed, k=key: run_workers(plan, env, source, sd, store.new_attempt(k)), host)
