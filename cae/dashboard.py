"""`cae dashboard`: optuna-dashboard on the study storage, whatever form ``STORAGE`` takes.

The storage URL is read the way the search reads it (:mod:`cae.urls`), so ``postgresql://`` gets
the installed driver and ``journal:///path.log`` becomes the journal file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cae.errors import CAEError
from cae.paths import runs_dir
from cae.urls import journal_path, with_driver


def dashboard_argv(storage: str | None, host: str, port: int) -> list[str]:
    """argv of ``optuna-dashboard`` on ``storage`` (default: the project's SQLite study storage)."""
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    if exe is None:
        raise CAEError("the `optuna-dashboard` command is not installed in this environment; run `make setup`")
    url = storage or f"sqlite:///{runs_dir() / 'optuna.db'}"
    journal = journal_path(url)
    if journal is not None and not journal.exists():
        raise CAEError(f"journal storage {journal} does not exist (run `make search STORAGE={url}` first)")
    return [exe, str(journal) if journal is not None else with_driver(url), "--host", host, "--port", str(port)]


def serve(storage: str | None, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the dashboard until Ctrl-C."""
    process = subprocess.Popen(dashboard_argv(storage, host, port))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return 0
