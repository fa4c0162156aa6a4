"""`cae dashboard`: optuna-dashboard on the study storage, whatever form ``STORAGE`` takes.

The storage URL (``--storage``, else ``CAE_STORAGE`` in the environment, else the project's SQLite
file) is read the way the search reads it (:mod:`cae.urls`): ``postgresql://`` gets the
installed driver (SQLAlchemy 2.1 would pick the absent psycopg 3), ``journal:///path.log`` (or a
``.log`` path) is the journal file, ``sqlite:///path.db`` the SQLite file. The dashboard runs in this
process on a storage object opened here, so a password in the URL never reaches a command line (given
as ``CAE_STORAGE``, not even this one's), and a storage that holds no study yet is a one-line error
instead of a dashboard that fails later.

optuna-dashboard has no login of its own and its API deletes studies: bound to anything but the
loopback interface (``make dashboard HOST=0.0.0.0``) every request needs the account ``cae ui``
uses (:mod:`cae.tracking.auth`: environment or a mode-600 file), checked here before the app runs.
Bound to a local address it has no login, so it answers only requests whose ``Host:`` header is a
local name: a web page cannot reach it under a name of its own (DNS rebinding) and delete studies.
The port is bound as ``cae ui`` binds it (:func:`cae.ui.listen`): a busy one is a one-line error.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cae.errors import CAEError
from cae.search.storage import open_existing_storage
from cae.tracking.auth import HOW, MIN_PASSWORD, read_credentials
from cae.ui import listen, url_host
from cae.urls import default_storage, is_local_host, shown

# The storage URL in the environment: how `make` passes STORAGE= without a password in any argv.
STORAGE_ENV = "CAE_STORAGE"


def storage_url(storage: str | None) -> str:
    """``storage`` (``--storage``), else ``CAE_STORAGE``, else the project's SQLite file."""
    return storage or os.environ.get(STORAGE_ENV) or default_storage()


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """A WSGI server on a socket bound and listening already (:func:`cae.ui.listen`).

    The dashboard's page loads several API calls at once: they are answered in parallel.
    """

    daemon_threads = True

    def __init__(self, sock: socket.socket, app: Callable[..., Iterable[bytes]]) -> None:
        # The socket comes bound, so that the busy-port check and the bind are one step with one
        # message; the server adopts it instead of binding one of its own.
        self.address_family = sock.family
        super().__init__(sock.getsockname(), _QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.server_name, self.server_port = socket.getfqdn(host), port  # as HTTPServer.server_bind sets them
        self.setup_environ()
        self.set_app(app)


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
        headers = [
            ("WWW-Authenticate", 'Basic realm="optuna-dashboard", charset="UTF-8"'),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
        ]
        start_response("401 Unauthorized", headers)
        return [body]

    return guarded


def local_hosts_only(app: Callable[..., Iterable[bytes]], host: str, port: int) -> Callable[..., Iterable[bytes]]:
    """``app`` for requests whose ``Host:`` is a name of this machine's loopback (with ``port``); 403 otherwise.

    Any web page can make a browser send requests to 127.0.0.1 under the page's own host name (DNS
    rebinding); the header still carries that name, so checking it keeps such requests from the app.
    """
    names = {"localhost", "127.0.0.1", "[::1]", url_host(host).lower()}
    allowed = {f"{name}:{port}" for name in names} | (names if port == 80 else set())  # :80 may be left out

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_HOST", "").strip().lower() in allowed:
            return app(environ, start_response)
        body = b"forbidden: this dashboard answers only to localhost, 127.0.0.1 or [::1] as the Host\n"
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("403 Forbidden", headers)
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
    """A bound (not yet serving) WSGI server with optuna-dashboard on ``storage`` (see :func:`storage_url`);
    behind a login for a non-local ``host`` (or ``auth``), and local ``Host:`` headers only on a local one."""
    login = login_for(host, auth)  # before the storage is opened: a refused start costs nothing
    sock = listen(host, port)  # likewise, and before optuna-dashboard's import (seconds)
    try:
        import optuna_dashboard

        app = optuna_dashboard.wsgi(open_existing_storage(storage_url(storage)))
        if login is not None:
            app = require_login(app, *login)
        if is_local_host(host):
            app = local_hosts_only(app, host, sock.getsockname()[1])
        return _ThreadedServer(sock, app)
    except BaseException:
        sock.close()
        raise


def serve(storage: str | None, host: str = "127.0.0.1", port: int = 8080, auth: bool = False) -> int:
    """Run the dashboard until Ctrl-C."""
    server = make_dashboard(storage, host, port, auth=auth)
    login = "; basic auth (the account of `make ui`)" if auth or not is_local_host(host) else ""
    address = f"http://{url_host(host)}:{server.server_port}/"
    print(f"optuna-dashboard on {shown(storage_url(storage))}: {address}{login}  Ctrl-C stops it.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
