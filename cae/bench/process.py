"""A benchmark search in a fresh ``cae search`` process of its own, in a process group of its own.

A fresh process per search keeps one search's leftovers (TensorFlow's retained traced graphs, a
slower garbage collection) out of the next one's wall time. The process group is recorded in a pid
file under ``runs/bench/``, so a benchmark killed while searches run can stop them on resume: a killed
parent leaves its searches (and their workers) running, and they would slow the next measurement down.
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

from cae.bench.studies import BenchEnv, timeline
from cae.errors import CAEError
from cae.schema import to_dict
from cae.search_config import SearchConfig


def _alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits for its parent to read its exit status)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_leftovers(root: Path) -> None:
    """Stop the process groups of searches a killed benchmark left running (if they are still ours)."""
    for pidfile in sorted(root.glob("*.pid")):
        pgid = int(pidfile.read_text().strip() or 0)
        try:
            cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            cmdline = b""
        if pgid > 1 and b"cae search" in cmdline:
            print(f"[bench] stopping {pidfile.stem}, left running by a killed benchmark (group {pgid})", flush=True)
            os.killpg(pgid, signal.SIGTERM)  # the CLI ends its trials and workers cleanly on SIGTERM
            for _ in range(150):
                if not _alive(pgid):
                    break
                time.sleep(1)
            else:
                os.killpg(pgid, signal.SIGKILL)
        pidfile.unlink()


class SearchProcess:
    """``cae search <config>`` started now; :meth:`result` reads its timeline back once it has ended."""

    def __init__(self, env: BenchEnv, cfg: SearchConfig, attempt: int, **extra: Any):
        """``extra`` goes into the result; ``threads`` there, if any, is the process's ``CAE_THREADS``."""
        self.env, self.study, self.attempt, self.extra = env, cfg.study, attempt, extra
        self.config = env.root / f"{cfg.study}.yaml"
        self.config.write_text(yaml.safe_dump(to_dict(cfg)))
        self.pidfile = env.root / f"{cfg.study}.pid"
        # No `threads` keeps the parent's CAE_THREADS (all cores unless the user said otherwise).
        threads = extra.get("threads")
        child_env = {**os.environ, **({"CAE_THREADS": str(threads)} if threads else {})}
        self.start = time.perf_counter()
        # The study named on the command line: the bench reads this study back, so no `-sample` rename.
        argv = [sys.executable, "-m", "cae", "search", str(self.config), "--study", cfg.study]
        self.proc = subprocess.Popen(argv, env=child_env, start_new_session=True)
        self.pidfile.write_text(str(self.proc.pid))
        self.wall: float | None = None

    def poll(self) -> bool:
        """True once the process has ended (its wall time is then fixed)."""
        if self.wall is None and self.proc.poll() is not None:
            self.wall = time.perf_counter() - self.start
            self.pidfile.unlink(missing_ok=True)
        return self.wall is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait()
        self.pidfile.unlink(missing_ok=True)

    def result(self) -> dict[str, Any]:
        """The stored measurement: study, attempt, timeline from MLflow, wall time (process start to end)."""
        self.proc.wait()
        self.poll()
        if self.proc.returncode != 0:
            raise CAEError(f"the benchmark search {self.study} failed (exit {self.proc.returncode}); see its log above")
        self.config.unlink()
        return {
            "study": self.study,
            "attempt": self.attempt,
            **self.extra,
            "trials": timeline(self.env.tracker, self.study),
            "wall_seconds": float(self.wall or 0.0),
        }
