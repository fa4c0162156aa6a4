"""``run_bench(plan, data)``: measure what is missing from the raw JSON, then render the report.

Sections in order: throughput, search efficiency, workers, fidelity, GPU (each only where the plan
asks for it). Each measurement is stored when complete (``results/bench/<mode>.json``), so rerunning
the same command after a kill resumes at the first missing one; the report is then rebuilt from the
file alone.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from cae.bench.efficiency import measure_efficiency
from cae.bench.fidelity import measure_fidelity
from cae.bench.gpu import gpu_device, measure_gpu
from cae.bench.plan import PLANS, Plan
from cae.bench.render import write_report
from cae.bench.store import Store
from cae.bench.studies import BASE, bench_env
from cae.bench.throughput import measure_throughput
from cae.bench.workers import default_strategy, measure_workers
from cae.data import load_splits
from cae.hardware import configure_threads
from cae.paths import ensure_dir, project_root
from cae.search_config import load_search


def describe_machine() -> str:
    """``AMD EPYC ..., 2 cores, 24 GiB RAM, no GPU; Python 3.11.7, TensorFlow 2.21.0``."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    mem = float("nan")
    try:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        pass
    gpu = gpu_device()
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {'GPU: ' + gpu if gpu else 'no GPU'}; "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


def shown_source(source: str | None) -> str | None:
    """``DATA`` as the report shows it: repository-relative, never an absolute path of this machine."""
    if source is None or not Path(source).exists():
        return source
    return os.path.relpath(Path(source).resolve(), project_root())


def record_meta(store: Store, plan: Plan, source: str | None, host: str) -> None:
    shown = shown_source(source)
    cfg = load_search(project_root() / BASE)
    splits = load_splits(source, cfg.experiment.seed, plan.subset)
    meta = store.data["meta"]
    meta.update(
        {
            "command": "make bench"
            + {"full": "", "quick": " QUICK=1"}.get(plan.mode, f" PLAN={plan.mode}")
            + (f" DATA={shown}" if shown else ""),
            "machine": host,
            "cores": os.cpu_count() or 1,
            "data": splits.data_source,
            "data_file": Path(splits.location).name,
            "split": list(splits.sizes),
            "space": cfg.space,
            "default_pruner": cfg.pruner.name,
            "default_strategy": default_strategy(),
        }
    )
    store.save()


def run_bench(plan_name: str, source: str | None) -> Path:
    """Measure whatever ``results/bench/<mode>.json`` lacks, then rewrite the report from it.

    Only the full plan writes BENCHMARKS.md; the others write ``results/bench/<mode>.md`` (the quick
    run is a smoke test, git-ignored; the pruner rerun is committed and BENCHMARKS.md's notes cite it).
    """
    if plan_name == "table":  # the learning-curve table, for the replay (cae/bench/table.py)
        from cae.bench.table import record_table

        configure_threads()
        return record_table(source, host=describe_machine())
    if plan_name == "replay":  # strategies replayed over that table (cae/bench/replay_report.py)
        from cae.bench.replay_report import run_replay

        return run_replay()
    plan = PLANS[plan_name]
    folder = ensure_dir(project_root() / "results" / "bench")
    store = Store(folder / f"{plan.mode}.json", plan.mode, plan.as_dict())
    configure_threads()  # TensorFlow on every core (CAE_THREADS may say otherwise): the 1-worker layout
    host = describe_machine()
    record_meta(store, plan, source, host)
    with bench_env() as env:
        measure_throughput(plan, source, store, host)
        measure_efficiency(plan, env, source, store, host)
        measure_workers(plan, env, source, store, host)
        measure_fidelity(plan, source, store, host)
        if plan.batch_sizes:  # the GPU section goes with the throughput one
            measure_gpu(source, store, host, plan.repeats)
    out = project_root() / "BENCHMARKS.md" if plan.mode == "full" else folder / f"{plan.mode}.md"
    return write_report(store.path, out)
