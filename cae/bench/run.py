"""``run_bench(plan, data)``: what `make bench` does for each ``PLAN``.

- ``full`` (default) and ``quick``: training speed (:mod:`cae.bench.speed`), then BENCHMARKS.md
  (the quick plan, a smoke test, writes ``results/bench/quick.md`` instead);
- ``table``: the learning-curve table, hours, resumable (:mod:`cae.bench.table`);
- ``replay``: the search strategies replayed over it, minutes (:mod:`cae.bench.replay_report`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from cae.hardware import configure_threads
from cae.paths import ensure_dir, project_root


def describe_machine() -> str:
    """``AMD EPYC ..., 2 cores, 24 GiB RAM, no GPU; Python 3.11.7, TensorFlow 2.21.0``."""
    import tensorflow as tf

    from cae.bench.speed import gpu_device

    cpu = platform.processor() or platform.machine()
    mem = float("nan")
    try:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), cpu)  # fmt: skip
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        pass
    gpu = gpu_device()
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {'GPU: ' + gpu if gpu else 'no GPU'}; "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


def run_bench(plan_name: str, source: str | None, live: tuple[str, str] | None = None) -> Path:
    """Measure what ``plan_name`` asks for and is not measured yet; returns the report written. ``live``:
    (study, storage URL) of a live study to show beside the replay."""
    configure_threads()  # TensorFlow on every core (CAE_THREADS may say otherwise)
    if plan_name == "table":
        from cae.bench.table import record_table

        return record_table(source, host=describe_machine())
    if plan_name == "replay":
        from cae.bench.replay_report import run_replay

        run_replay(live=live)
        return write_bench_md()
    from cae.bench.speed import PLANS, Store, measure_speed

    plan = PLANS[plan_name]
    folder = ensure_dir(project_root() / "results" / "bench")
    path = folder / ("speed.json" if plan.mode == "full" else f"speed-{plan.mode}.json")
    measure_speed(plan, source, Store(path, plan, describe_machine()))
    return write_bench_md() if plan.mode == "full" else write_bench_md(path, folder / f"{plan.mode}.md")


def write_bench_md(speed: Path | None = None, out: Path | None = None) -> Path:
    from cae.bench.render import write_report

    folder = project_root() / "results" / "bench"
    return write_report(speed or folder / "speed.json", out or project_root() / "BENCHMARKS.md")
