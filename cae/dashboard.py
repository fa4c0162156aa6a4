"""`cae dashboard`: optuna-dashboard on the study storage, whatever form ``STORAGE`` takes.

The storage URL is read the way the search reads it (:mod:`cae.urls`): ``postgresql://`` gets the
installed driver (SQLAlchemy 2.1 would pick the absent psycopg 3), ``journal:///path.log`` (or a
``.log`` path) is the journal file, ``sqlite:///path.db`` the SQLite file. The dashboard runs in this
process on a storage object opened here, so a password in the URL never reaches a command line,
and a storage that holds no study yet is a one-line error instead of a dashboard that fails later.
"""

from __future__ import annotations

from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cae.errors import CAEError
from cae.paths import runs_dir
from cae.urls import journal_path, shown, with_driver


def default_storage() -> str:
    return f"sqlite:///{runs_dir() / 'optuna.db'}"


def open_storage(url: str) -> Any:
    """The Optuna storage behind ``url``, read-only in spirit: nothing is created if it is missing."""
    import optuna

    journal = journal_path(url)
    if journal is not None:
        if not journal.is_file():
            raise CAEError(f"journal storage {journal} does not exist (run `make search STORAGE={url}` first)")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CAEError(
            f"invalid storage URL {url!r}; expected sqlite:///path.db, postgresql://user@host/db or journal:///path.log"
        ) from None
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        raise CAEError(f"no study storage at {url} (run `make search` first, or pass STORAGE=)")
    try:
        # Tables are not created here: a wrong database would otherwise gain Optuna's schema.
        storage = optuna.storages.RDBStorage(with_driver(url), skip_compatibility_check=True,
                                             skip_table_creation=True,
                                             engine_kwargs={"connect_args": _connect_args(parsed)})  # fmt: skip
        storage.get_all_studies()
    except Exception as err:  # driver, host, credentials, or a database without Optuna's tables
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CAEError(f"cannot read Optuna storage {shown(url)}: {first}") from None
    return storage


def _connect_args(parsed: Any) -> dict[str, Any]:
    return {"timeout": 30} if parsed.get_backend_name() == "sqlite" else {"connect_timeout": 20}


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """The dashboard's page loads several API calls at once: answer them in parallel."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
        pass


def make_dashboard(storage: str | None, host: str, port: int) -> Any:
    """A bound (not yet serving) WSGI server with optuna-dashboard on ``storage``."""
    import optuna_dashboard

    url = storage or default_storage()
    app = optuna_dashboard.wsgi(open_storage(url))
    try:
        return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as err:
        raise CAEError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another PORT") from None


def serve(storage: str | None, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the dashboard until Ctrl-C."""
    server = make_dashboard(storage, host, port)
    print(f"optuna-dashboard on {shown(storage or default_storage())}: http://{host}:{port}/  Ctrl-C stops it.",
          flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
