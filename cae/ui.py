"""`cae ui`: the MLflow UI (an `mlflow server`) on the project's tracking store.

Started lean: one web worker and no background job consumers (``mlflow server`` otherwise starts
4 workers and 7 job consumers, ~1.9 GB and ~50 s on a 2-core machine; lean, ~0.5 GB in ~9 s).

Bound to anything but the loopback interface (``make ui HOST=0.0.0.0``), the server runs MLflow's
basic-auth app: every request needs the account from :mod:`cae.tracking.auth` (environment or a
mode-600 file), so nobody on the network can read, overwrite or delete runs anonymously.

The port is bound here, before the server starts, and the listening socket is handed to it
(uvicorn's ``--fd``, the socket as the server's standard input, as inetd and systemd pass one):
a port that another server holds is a one-line error at once, and every request this process makes
(the start-up probe, the login check that carries the admin password) goes to a socket that only
our own server accepts from, at its bound address (never a name that may resolve elsewhere) and
never through an HTTP proxy of the environment. A check that the answer comes from our server (a
nonce it would echo, the process owning the port) would still leave a window between check and
request; holding the port leaves none. What remains: a process of the same user can read the
password anyway; on BSD and macOS, SO_REUSEADDR lets another program bind the more specific
127.0.0.1 beside our 0.0.0.0 between the loopback probe and our bind (Linux refuses it); and an
IPv6 listener on ``[::1]`` may appear beside our IPv4 socket later, where a browser opening
``localhost`` could land (never this process's requests, which go to the bound address).
Bound to a local address, MLflow's own ``--allowed-hosts`` default refuses foreign ``Host:`` headers
(DNS rebinding), so nothing is added for that.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cae.errors import CAEError
from cae.paths import ensure_dir, runs_dir
from cae.tracking.auth import auth_server_env
from cae.urls import is_local_host, shown, with_driver

LOOPBACK = ("127.0.0.1", "::1")


def needs_auth(host: str) -> bool:
    """A server reachable from other machines must authenticate its users (the UI and the dashboard)."""
    return not is_local_host(host)


def _address(host: str) -> str:
    return host.strip().strip("[]")


def _is_wildcard(host: str) -> bool:
    name = _address(host)
    if not name:
        return True  # Python's "" binds every interface, as 0.0.0.0 does
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


def url_host(host: str) -> str:
    """``host`` as it is written in a URL (an IPv6 address in brackets)."""
    name = _address(host) or "0.0.0.0"
    return f"[{name}]" if ":" in name else name


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``: loopback for a wildcard."""
    if _is_wildcard(host):
        return "[::1]" if ":" in _address(host) else "127.0.0.1"
    return url_host(host)


def port_taken(host: str, port: int) -> CAEError:
    return CAEError(f"{url_host(host)}:{port} is in use by another server; pass PORT= with a free port (--port)")


def _answers_on_loopback(port: int) -> bool:
    """Whether a server listens on the loopback interface at ``port`` (IPv4 or IPv6).

    Only a connection is opened and closed, nothing is sent. Binding alone does not show it: a
    wildcard bind beside a loopback listener succeeds on BSD and macOS (SO_REUSEADDR), and IPv4 and
    IPv6 ports never conflict, yet a browser opening ``localhost`` may reach that other server.
    """
    for address in LOOPBACK:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:  # refused, or no IPv6 on this machine: nobody there
            continue
    return False


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` and listening, held by the caller (``port`` 0: any free port).

    A one-line error when another server already listens there, or, for a local or wildcard
    ``host``, on the loopback interface at that port.
    """
    if port and (_is_wildcard(host) or is_local_host(host)) and _answers_on_loopback(port):
        raise port_taken(host, port)
    try:
        infos = socket.getaddrinfo(_address(host) or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise CAEError(f"cannot listen on HOST={host}: {err.strerror}") from None
    # IPv4 first: "localhost" then binds 127.0.0.1, which every client of this machine reaches.
    family, kind, proto, _, address = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As every server does (uvicorn and wsgiref alike): a restart is not refused for the
        # TIME_WAIT connections of the last run. On Linux a port with a live listener still refuses.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise port_taken(host, port) from None
        raise CAEError(f"cannot listen on {url_host(host)}:{port} ({err.strerror or err})") from None
    return sock


def server_command(
    backend_uri: str,
    host: str,
    port: int,
    artifacts: Path | None = None,
    *,
    auth: bool = False,
    auth_dir: Path | None = None,
    socket_on_stdin: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a lean ``mlflow server`` on ``backend_uri``; ``auth``: the basic-auth app
    (its user database in ``auth_dir``, default ``runs/auth/``). Secrets go in the environment only.

    ``socket_on_stdin``: the server serves the listening socket it gets as standard input (see
    :func:`started_server`) instead of binding ``host``/``port`` itself.
    """
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        raise CAEError("the `mlflow` command is not installed in this environment; run `make setup`")
    artifacts = artifacts or ensure_dir(runs_dir() / "mlartifacts")
    argv = [mlflow, "server", "--artifacts-destination", artifacts.as_uri()]
    argv += ["--host", host, "--port", str(port), "--workers", "1"]
    if socket_on_stdin:
        # `mlflow server` starts uvicorn without touching its standard input, so fd 0 reaches it.
        argv += ["--uvicorn-opts", "--fd 0"]
    # The store's URI (a database URL may hold a password) goes in the environment, not in argv.
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BACKEND_STORE_URI": with_driver(backend_uri),
    }
    if auth:
        argv += ["--app-name", "basic-auth"]
        env.update(auth_server_env(auth_dir))
    return argv, env


@dataclass
class Server:
    """A running ``mlflow server`` of ours: its process, the port it serves and its environment."""

    process: subprocess.Popen
    host: str
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        """The address this machine's clients use (loopback for a wildcard host)."""
        return f"http://{client_host(self.host)}:{self.port}"


@contextmanager
def started_server(
    backend_uri: str,
    sock: socket.socket,
    artifacts: Path | None = None,
    *,
    auth: bool = False,
    auth_dir: Path | None = None,
    output: int | None = None,
) -> Iterator[Server]:
    """A lean ``mlflow server`` serving ``sock`` (from :func:`listen`); stopped, with its children, on exit.

    The caller keeps ``sock`` open until the end: while our server starts, or after it died, the port
    is still ours, so a request sent to it can only ever be answered by our server. ``output``: where
    its log goes (e.g. ``subprocess.DEVNULL``; default this process's own output).
    """
    host, port = sock.getsockname()[:2]
    argv, env = server_command(backend_uri, host, port, artifacts, auth=auth, auth_dir=auth_dir, socket_on_stdin=True)
    # Its own session: stopping it reaches the uvicorn process it starts, too.
    process = subprocess.Popen(argv, env=env, stdin=sock.fileno(), stdout=output, stderr=output, start_new_session=True)
    try:
        yield Server(process, host, port, env)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its uvicorn too, even if `mlflow server` is gone), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # nobody left in the group
        try:
            process.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


# Requests to our own server only: an http_proxy of the environment would otherwise receive them,
# the admin password included (urllib sends loopback requests to the proxy unless no_proxy says not).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``/health`` until the server answers; a one-line error as soon as it exits, or if it never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CAEError(f"mlflow server exited with status {process.returncode} before answering at {url}")
        try:
            with _DIRECT.open(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise CAEError(f"mlflow server did not answer at {url}/health within {timeout:.0f} s")


def serve(study: str | None, host: str = "127.0.0.1", port: int = 5000, auth: bool = False) -> int:
    """Serve the UI until Ctrl-C; prints the address of the study's runs table.

    ``auth`` (always on for a non-loopback ``host``): MLflow's basic-auth app.
    """
    from cae.tracking import Tracker, tracking_uri

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"MLFLOW_TRACKING_URI is a server already: open {shown(uri)}")
        return 0
    auth = auth or needs_auth(host)
    try:
        # The port first: a busy one is a one-line error before anything else is loaded or written.
        with listen(host, port) as sock:
            tracker = Tracker(uri)
            with started_server(uri, sock, auth=auth) as server:
                wait_until_up(server.url, server.process)
                if auth:
                    _check_login(server.url, server.env)
                user = server.env.get("MLFLOW_AUTH_ADMIN_USERNAME")
                login = f"  basic auth: user {user}; workers need the same credentials (env or file)\n" if auth else ""
                print(
                    f"\nMLflow UI: {tracker.ui_url(study, url_host(host), server.port)}\n{login}"
                    "  runs table of the study; select child runs → Compare → val_loss chart.  Ctrl-C stops it.",
                    flush=True,
                )
                return server.process.wait()
    except KeyboardInterrupt:
        return 0


def _check_login(url: str, env: dict[str, str]) -> None:
    """The account exists with this password (it is set on the server's first start only).

    ``url`` must reach our own server only (:func:`started_server`): the request carries the password.
    """
    user = env["MLFLOW_AUTH_ADMIN_USERNAME"]
    token = base64.b64encode(f"{user}:{env['MLFLOW_AUTH_ADMIN_PASSWORD']}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Authorization": f"Basic {token}"}
    )
    try:
        _DIRECT.open(request, timeout=30).close()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise CAEError(
                f"the tracking server refused user {user!r}: the admin password is set on the first start only "
                f"(database {Path(env['MLFLOW_AUTH_CONFIG_PATH']).parent}/basic_auth.db); "
                "use the password it was created with, or change it in the UI"
            ) from None
        raise
