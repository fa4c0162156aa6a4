"""`cae dashboard`: optuna-dashboard on the study storage, whatever form ``STORAGE`` takes.

The storage URL is read the way the search reads it (:mod:`cae.urls`): ``postgresql://`` gets the
installed driver (SQLAlchemy 2.1 would pick the absent psycopg 3), ``journal:///path.log`` (or a
``.log`` path) is the journal file, ``sqlite:///path.db`` the SQLite file. The dashboard runs in this
process on a storage object opened here, so a password in the URL never reaches a command line,
and a storage that holds no study yet is a one-line error instead of a dashboard that fails later.
"""

from __future__ import annotations

from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cae.errors import CAEError
from cae.paths import runs_dir
from cae.urls import shown


def default_storage() -> str:
    return f"sqlite:///{runs_dir() / 'optuna.db'}"


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """The dashboard's page loads several API calls at once: answer them in parallel."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
        pass


def make_dashboard(storage: str | None, host: str, port: int) -> Any:
    """A bound (not yet serving) WSGI server with optuna-dashboard on ``storage``."""
    import optuna_dashboard

    from cae.search.study import open_existing_storage

    url = storage or default_storage()
    app = optuna_dashboard.wsgi(open_existing_storage(url))
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
