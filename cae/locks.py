"""The one file lock of the package: an exclusive ``flock`` on a file beside what it protects.

Used where processes on one host must take turns: creating a SQLite store's schema (two first runs
on an empty ``runs/`` must not both create it), exporting a study's best, and a worker's check of the
study's budget until its new trial exists. The holder writes who it is into the lock file, so a
process that has to wait says who holds the lock and for how long (a process stopped with Ctrl-Z
holds it until it is resumed or killed). The lock is released when its file closes, also if the
holder dies.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cae.paths import ensure_dir
from cae.urls import sqlite_file

SAY_AFTER = 2.0  # seconds of waiting before the line that says who holds the lock


@contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while the body runs; ``what`` names it in the waiting line."""
    ensure_dir(path.parent)
    with path.open("a+") as fh:
        _acquire(fh, path, what)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {time.time():.0f} {' '.join(sys.argv)[:200]}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _acquire(fh: object, path: Path, what: str) -> None:
    start, said = time.monotonic(), False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if said:
                print(
                    f"note: got the lock on {what} after {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True
                )
            return
        except BlockingIOError:
            if not said and time.monotonic() - start >= SAY_AFTER:
                said = True
                print(f"note: waiting for the lock on {what} ({path}): {holder(path)}", file=sys.stderr, flush=True)
            time.sleep(0.1)


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it (pid, since when, command line)."""
    try:
        pid, since, *command = path.read_text().split(maxsplit=2)
        held = time.time() - float(since)
    except (OSError, ValueError):
        return "held by another process"
    state = ""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        state = " (stopped: resume it with `fg`, or end it)" if fields[0] == "T" else ""
    except (OSError, IndexError):
        pass
    return f"held by pid {pid} for {held:.0f} s{state}: {' '.join(command)}"


@contextmanager
def creating_schema(url: str) -> Iterator[None]:
    """Hold ``<database>.schema.lock`` while the body first connects to a SQLite ``url`` (when MLflow and
    Optuna create or upgrade their tables), so two first runs on an empty store take turns. Server
    databases (PostgreSQL) have transactional DDL of their own: no lock."""
    database = sqlite_file(url)
    if database is None:
        yield
        return
    with file_lock(database.parent / f"{database.name}.schema.lock", f"the schema of {database.name}"):
        yield
