"""Shared fixtures: every test writes under a temporary runs/ and its own MLflow store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cae.errors import CAEError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CAE_OFFLINE"] = "1"  # never try a download from a test

REPO = Path(__file__).resolve().parent.parent
# Read before the session fixture clears CAE_DATA (tests name their data explicitly).
SHARED_ARCHIVE = Path(os.environ.get("CAE_DATA") or REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, why: str) -> None:
    """Skip locally when a resource is missing; in CI (CI=true) that is a failure instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)


def one_line_error(path: Path, loader: Callable[[Path], object]) -> str:
    """The one-line error ``loader(path)`` ends with: no traceback's worth of text, no second line."""
    with pytest.raises(CAEError) as err:
        loader(path)
    message = str(err.value)
    assert "\n" not in message and len(message) < len(str(path)) + 300, message[:500]
    return message


def shared_archive() -> Path:
    require(SHARED_ARCHIVE.exists(), f"the CIFAR-10 archive {SHARED_ARCHIVE} is not on this machine (set CAE_DATA)")
    return SHARED_ARCHIVE


# `slow` (kept out of `make test-fast`; `make test` and CI run them): every test that needs a
# server fixture or one of the module fixtures that run a real study end to end, wherever it
# lives, and these tests that start processes themselves, until their own files mark them.
SLOW_FIXTURES = {"postgres", "mlflow_server", "three_trials", "studies", "study"}
SLOW_TESTS = {"test_ui.py::test_ui_serves_the_study_runs": "starts an `mlflow server`"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        named = f"{item.path.name}::{item.name}" in SLOW_TESTS
        if named or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs")
    os.environ["CAE_RUNS_DIR"] = str(path)
    os.environ.pop("CAE_DATA", None)  # tests name their data explicitly
    # One decoded-data cache for the whole session, also for tests (and the CLI processes they
    # start, which inherit it) that move CAE_RUNS_DIR: the real archive is decoded once (~15 s), not
    # once per runs/ folder. A CAE_DATA_CACHE set by the caller is kept (reuse across sessions).
    os.environ.setdefault("CAE_DATA_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    return path


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store per test module (set as MLFLOW_TRACKING_URI while it runs)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def sample_splits():
    from cae.data import load_splits

    return load_splits("sample", seed=0)


# --------------------------------------------------------------------------------------------
# Real services (tests/servers.py): PostgreSQL and an `mlflow server`, one of each per session.


def start_postgres():
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port (via runuser when root)."""
    import shutil

    from .servers import Postgres, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    require(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        require(shutil.which("runuser") is not None, "runuser is needed to start PostgreSQL as root")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            require(False, "there is no 'postgres' user to run PostgreSQL as (CI runs as root)")
    return Postgres(bin_dir).start()


@pytest.fixture(scope="session")
def postgres():
    """The session's cluster (the `mlflow server` fixture's backend store among others)."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_postgres():
    """A cluster of the module's own, for tests that stop and start it: stopping the session's would
    stop its `mlflow server` too."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """A lean `mlflow server` (cae.ui.server_command) with a PostgreSQL backend; yields it (``.url``)."""
    from .servers import MlflowServer

    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(postgres.create_database("mlflow"), root / "artifacts", root / "server.log").start()
    yield server
    server.stop()
