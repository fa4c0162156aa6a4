"""Schema creation serialised: two first runs on one empty SQLite store must not both create it.

Started together on an empty ``runs/``, two processes both ran MLflow's (alembic) and Optuna's
table creation; one failed with ``table ... already exists`` and, now and then, MLflow's store was
left half-migrated for good. A file lock beside the database, held while a process connects for the
first time (which is when both libraries create or upgrade their tables), makes the second wait
for the first and then find the tables there. Server databases (PostgreSQL) are left to their own
transactional DDL; their clients are not serialised here.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cae.paths import ensure_dir


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).absolute() if path and path != ":memory:" else None


@contextmanager
def creating_schema(url: str) -> Iterator[None]:
    """Hold ``<database>.schema.lock`` while the body connects to ``url`` (no-op for a server)."""
    database = sqlite_file(url)
    if database is None:
        yield
        return
    lock = ensure_dir(database.parent) / f"{database.name}.schema.lock"
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
