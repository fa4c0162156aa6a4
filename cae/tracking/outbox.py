"""Per-epoch metrics on their way to the tracking store: sent in order by one background thread, so a
slow, restarting or silent server holds up no epoch, and never lost.

What the store has not taken when a run is closed, or when the process ends (a server that stopped
answering, a signal), is written to ``runs/outbox/<run id>.json`` and sent by the next command that
opens the store. MLflow's own asynchronous logging cannot do this: what it has queued is lost, or
waited for at exit for as long as its retries last, when the server is gone.
"""

from __future__ import annotations

import atexit
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cae.paths import ensure_dir, runs_dir, write_text_atomic


def outbox_dir() -> Path:
    return runs_dir() / "outbox"


class Outbox:
    """One tracking client's queue of per-epoch metrics: ``(run id, [(key, value, timestamp, step)])``."""

    def __init__(self, client: Any, silent: Any = lambda: False):
        self.client, self.silent = client, silent  # silent(): the server stopped answering (waiting is no use)
        self._queue: queue.Queue[tuple[str, list[tuple[str, float, int, int]]]] = queue.Queue()
        self._unsent: dict[str, list[tuple[str, float, int, int]]] = {}  # run id -> what failed to go
        self._current: tuple[str, list[Any]] | None = None  # the batch on its way (kept if we must stop)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._send_all, name="cae-metrics-outbox", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def put(self, run_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
        self._queue.put((run_id, metrics))

    def _send_all(self) -> None:
        from mlflow.entities import Metric

        while True:
            run_id, metrics = self._queue.get()
            with self._lock:
                waiting = run_id in self._unsent  # after one batch failed, the run's later ones wait behind it
                self._current = None if waiting else (run_id, metrics)
            try:
                if not waiting:
                    self.client.log_batch(run_id, metrics=[Metric(*m) for m in metrics])
            except Exception:  # the store refused or gave up: kept for the file, never dropped
                waiting = True
            finally:
                with self._lock:
                    if waiting:
                        self._unsent.setdefault(run_id, []).extend(metrics)
                    self._current = None
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until everything queued so far was sent or failed to go (what failed waits in ``unsent``),
        or the server stopped answering."""
        while self._queue.unfinished_tasks and not self.silent():
            time.sleep(0.05)

    def _at_exit(self) -> None:
        """Before the interpreter stops this daemon thread: what a server that answers can still take is
        sent, whatever has not gone is kept in the outbox folder."""
        self.drain()
        self.save(None, everything=True)

    def save(self, run_id: str | None = None, everything: bool = False) -> int:
        """Write what the store has not taken of ``run_id`` (of every run: None) to the outbox folder;
        with ``everything`` (at exit, or the server silent) also what is still queued or on its way (it
        may then reach the store twice: the same value at the same step). Returns the values kept."""
        pending: dict[str, list[Any]] = {}
        if everything:
            kept_back = []
            while True:
                try:
                    rid, metrics = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._queue.task_done()
                if run_id is None or rid == run_id:
                    pending.setdefault(rid, []).extend(metrics)
                else:
                    kept_back.append((rid, metrics))
            for item in kept_back:
                self._queue.put(item)
            with self._lock:
                if self._current is not None and run_id in (None, self._current[0]):
                    pending.setdefault(self._current[0], []).extend(self._current[1])
        with self._lock:
            for rid in [run_id] if run_id is not None else list(self._unsent):
                pending[rid] = [*self._unsent.pop(rid, []), *pending.get(rid, [])]
        kept = 0
        for rid, metrics in pending.items():
            if not metrics:
                continue
            path = ensure_dir(outbox_dir()) / f"{rid}.json"
            earlier = json.loads(path.read_text()) if path.exists() else []
            write_text_atomic(path, json.dumps([*earlier, *metrics]))
            kept += len(metrics)
        if kept and run_id is None:
            print(
                f"note: {kept} per-epoch metric value(s) the tracking server did not take are kept in {outbox_dir()}; "
                "the next command that opens the store sends them",
                file=sys.stderr,
                flush=True,
            )
        return kept


def resend(client: Any) -> int:
    """Send what earlier commands left in the outbox folder (runs whose server was away); returns how many
    values went. A file whose run the store does not have, or that still cannot go, stays."""
    from mlflow.entities import Metric

    sent = 0
    folder = outbox_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            metrics = [Metric(*m) for m in json.loads(path.read_text())]
            for i in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a call
                client.log_batch(path.stem, metrics=metrics[i : i + 1000])
        except Exception:  # the server is still away, or the run is gone: the file stays for the next one
            continue
        path.unlink()
        sent += len(metrics)
    return sent
