"""`cae dashboard`: optuna-dashboard on the study storage, whatever form ``STORAGE`` takes.

The storage URL is read the way the search reads it (:mod:`cae.urls`): ``postgresql://`` gets the
installed driver (SQLAlchemy 2.1 would pick the absent psycopg 3), ``journal:///path.log`` (or a
``.log`` path) is the journal file, ``sqlite:///path.db`` the SQLite file. The dashboard runs in this
process on a storage object opened here, so a password in the URL never reaches a command line,
and a storage that holds no study yet is a one-line error instead of a dashboard that fails later.

optuna-dashboard has no login of its own and its API deletes studies: bound to anything but the
loopback interface (``make dashboard HOST=0.0.0.0``) every request needs the account ``cae ui``
uses (:mod:`cae.tracking.auth`: environment or a mode-600 file), checked here before the app runs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cae.errors import CAEError
from cae.paths import runs_dir
from cae.search.study import open_existing_storage
from cae.tracking.auth import HOW, MIN_PASSWORD, read_credentials
from cae.urls import is_local_host, shown


def default_storage() -> str:
    return f"sqlite:///{runs_dir() / 'optuna.db'}"


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """The dashboard's page loads several API calls at once: answer them in parallel."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
        pass


def require_login(app: Callable[..., Iterable[bytes]], user: str, password: str) -> Callable[..., Iterable[bytes]]:
    """``app`` behind HTTP basic auth: a request without ``user``/``password`` gets 401 and never reaches it."""
    wanted = (user.encode(), password.encode())

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        try:
            given_user, _, given_password = base64.b64decode(token, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            given_user, given_password = b"", b""
        # Both compared in constant time, always (no early exit that would time out a guess).
        ok = hmac.compare_digest(given_user, wanted[0]) & hmac.compare_digest(given_password, wanted[1])
        if scheme.lower() == "basic" and ok:
            return app(environ, start_response)
        body = b"login required: the account of `make ui` (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)\n"
        start_response("401 Unauthorized", [
            ("WWW-Authenticate", 'Basic realm="optuna-dashboard", charset="UTF-8"'),
            ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
        ])  # fmt: skip
        return [body]

    return guarded


def login_for(host: str, auth: bool = False) -> tuple[str, str] | None:
    """The account every request must give (``auth``, or always for a non-local ``host``), else None.

    A one-line error without one: a dashboard open to the network must never serve anonymously.
    """
    if not auth and is_local_host(host):
        return None
    found = read_credentials()
    if found is None:
        raise CAEError(f"a dashboard open to the network (HOST={host}) needs a login: {HOW}")
    if len(found[1]) < MIN_PASSWORD:
        raise CAEError(f"the dashboard's password must have at least {MIN_PASSWORD} characters (as for `make ui`)")
    return found


def make_dashboard(storage: str | None, host: str, port: int, *, auth: bool = False) -> Any:
    """A bound (not yet serving) WSGI server with optuna-dashboard on ``storage``; behind a login for
    a non-local ``host`` (or ``auth``)."""
    import optuna_dashboard

    login = login_for(host, auth)  # before the storage is opened: a refused start costs nothing
    url = storage or default_storage()
    app = optuna_dashboard.wsgi(open_existing_storage(url))
    if login is not None:
        app = require_login(app, *login)
    try:
        return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as err:
        raise CAEError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another PORT") from None


def serve(storage: str | None, host: str = "127.0.0.1", port: int = 8080, auth: bool = False) -> int:
    """Run the dashboard until Ctrl-C."""
    server = make_dashboard(storage, host, port, auth=auth)
    login = "; basic auth (the account of `make ui`)" if auth or not is_local_host(host) else ""
    print(f"optuna-dashboard on {shown(storage or default_storage())}: http://{host}:{port}/{login}  Ctrl-C stops it.",
          flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
