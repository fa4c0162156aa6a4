"""The checks of a command's input that need no TensorFlow, run before anything imports it.

A misspelt data path, a broken YAML file, a search space with a bad range or a storage URL that
cannot work is answered in about a second, not after TensorFlow's 15-20 s start-up. Checks that
need the data decoded or the storage opened come later, still before anything is created.

It also decides, once, where the data comes from (``data.source`` pinned to the path given,
``keras`` or ``sample``), so every later step loads the same data without looking again. A study
records the data it trained on (:mod:`cae.search.record`): resuming it on other data is refused
in one line, so a demo on the bundled sample never mixes with a study of the real data.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from cae.config import ExperimentConfig
from cae.errors import CAEError
from cae.paths import check_writable, ensure_dir, runs_dir
from cae.schema import with_overrides
from cae.search.storage import parse_storage_url, storage_url
from cae.search_config import SearchConfig
from cae.sources import resolve_source
from cae.space import load_space
from cae.urls import journal_path


def pinned_source(source: str | None) -> str:
    """The data source a run will use: the path as given, ``keras`` or ``sample`` (never None). A file
    that is no archive is said here, before anything is loaded (its contents are checked as it is read)."""
    given = source or os.environ.get("CAE_DATA") or None
    path, data_source = resolve_source(given)  # an explicit path that does not exist is a one-line error
    if data_source == "path" and Path(path).is_file() and not tarfile.is_tarfile(path):
        raise CAEError(
            f"{given}: not a CIFAR-10 source; expected a cifar-10-batches-py folder, cifar-10-python.tar.gz, "
            "or a {train,test}/<class>/*.png|jpg folder or .tar.gz"
        )
    return given if data_source == "path" else data_source  # type: ignore[return-value]


def check_experiment(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with its data source pinned; the runs folder exists and is writable."""
    check_writable(runs_dir())
    return with_overrides(config, {"data.source": pinned_source(config.data.source)})


def check_storage(url: str) -> None:
    """A storage URL of a form that can work, its folder creatable (the database is reached later)."""
    journal = journal_path(url)
    if journal is not None:
        ensure_dir(journal.absolute().parent)
        return
    parsed = parse_storage_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        ensure_dir(Path(parsed.database).absolute().parent)


def check_search(cfg: SearchConfig) -> SearchConfig:
    """``cfg`` after the checks: space, data (pinned), storage URL, runs folder."""
    space = load_space(cfg.space, cfg.experiment)
    if cfg.code_values is not None and "model.code_budget" in space.names:
        raise CAEError(
            f"{cfg.space} samples model.code_budget, but the study compares one code size (code_values="
            f"{cfg.code_values}): use a space without it, or a study across sizes (experiments/pareto.yaml)"
        )
    experiment = check_experiment(cfg.experiment)
    cfg = with_overrides(cfg, {"experiment.data.source": experiment.data.source})
    check_storage(storage_url(cfg))
    return cfg
