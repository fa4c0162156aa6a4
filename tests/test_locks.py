"""Two first runs at once on an empty runs/ folder: real processes, real SQLite stores (MLflow and
Optuna), started together and repeated; every one must succeed and the stores must work after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cae.urls import sqlite_file

REPO = Path(__file__).resolve().parent.parent

# What `make search` does first against the stores: the MLflow store, then the Optuna storage.
FIRST_START = """
import sys
from cae.search_config import SearchConfig
from cae.search.storage import open_storage
from cae.tracking import Tracker
root = sys.argv[1]
Tracker(f"sqlite:///{root}/mlflow.db").check().experiment_id(sys.argv[2], create=True)
storage = open_storage(SearchConfig(study=sys.argv[2], storage=f"sqlite:///{root}/optuna.db"))
print("ok", storage.get_all_studies() is not None)
"""


def test_the_lock_file_sits_beside_a_sqlite_database_only(tmp_path):
    assert sqlite_file(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("postgresql://u@h/db") is None


@pytest.mark.slow  # starts 2 × 3 Python processes
def test_two_first_starts_on_an_empty_store_both_succeed(tmp_path):
    for attempt in range(3):
        root = tmp_path / f"runs{attempt}"
        root.mkdir()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", FIRST_START, str(root), f"study{i}"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        outs = [p.communicate(timeout=240) for p in procs]
        for proc, (out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0 and out.startswith("ok"), err[-2000:]
        from cae.tracking import Tracker

        names = Tracker(f"sqlite:///{root}/mlflow.db").experiment_names()  # the store works afterwards
        assert {"study0", "study1"} <= set(names)


def test_a_held_lock_is_waited_for_with_a_line_naming_its_holder(tmp_path, capsys):
    """A process that holds the lock (here: stopped with SIGSTOP, as Ctrl-Z does) is named with how long it
    has held it; the waiter goes on once it is released."""
    import os
    import signal
    import threading
    import time

    from cae.locks import file_lock

    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from cae.locks import file_lock\n"
         f"with file_lock(Path({str(lock)!r}), 'x'):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGSTOP)
    release = threading.Timer(3.5, lambda: (os.kill(holder.pid, signal.SIGCONT), holder.stdin.close()))
    release.start()
    started = time.monotonic()
    with file_lock(lock, "the test's lock"):
        waited = time.monotonic() - started
    release.join()
    holder.wait(timeout=30)
    err = capsys.readouterr().err
    assert waited >= 3, waited
    assert f"waiting for the lock on the test's lock ({lock}): held by pid {holder.pid} for" in err, err
    assert "(stopped: resume it with `fg`, or end it)" in err and "got the lock" in err, err
