"""Files and stores as a committed report names them: relative to the repository, never absolute.

A report is committed and read on other machines, where an absolute ``/home/alice/shared/data/...`` means nothing;
``../shared/data/...`` from the checkout still says where the file sat beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cae.paths import project_root
from cae.urls import journal_path, shown, sqlite_file

DEFAULT_STORAGE = "runs/optuna.db"  # what ``STORAGE`` unset means (``sqlite:///<repo>/runs/optuna.db``)


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository root; a relative path is returned as it is."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(path)
    try:
        return os.path.relpath(p, project_root())
    except ValueError:  # another drive (Windows) has no relative path: the file name still says which file
        return p.name


def shown_storage(storage: str | None) -> str:
    """The Optuna storage: files repository-relative (the default as ``runs/optuna.db``), URLs without password."""
    if not storage:
        return DEFAULT_STORAGE
    journal = journal_path(storage)
    if journal is not None:
        return repo_relative(journal)  # a ``.log`` path is itself a valid STORAGE value
    database = sqlite_file(storage)
    if database is not None:
        relative = repo_relative(database)
        return DEFAULT_STORAGE if relative == DEFAULT_STORAGE else "sqlite:///" + relative
    return shown(storage)
