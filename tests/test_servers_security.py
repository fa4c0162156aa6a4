"""`make ui` and `make dashboard` against what else runs on the machine: a busy port is a one-line error
at once, no credential ever reaches a server we did not start, and a local dashboard answers only to
local ``Host:`` names (DNS rebinding). In-process, with a stranger's HTTP server on the port."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import optuna
import pytest

from cae.cli import main
from cae.dashboard import make_dashboard
from cae.errors import CAEError
from cae.ui import listen, serve, wait_until_up

PASSWORD = "a-test-password-1234"


class Stranger:
    """Another program's HTTP server on a port: 200 to every request (``/health`` too), each one recorded."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                requests.append((self.command, self.path, self.headers.get("Authorization")))
                body = b'{"status": "OK"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, format, *args):  # one line per request is noise in a test log
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def account(tmp_path, monkeypatch):
    """The admin account in the environment, and a tracking store and runs/ of this test only."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of the machine
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cae-admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))


# ---- make ui ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stranger_host", "host"),
    [
        ("127.0.0.1", "0.0.0.0"),  # make ui HOST=0.0.0.0 PORT=<a port a local server holds>
        ("127.0.0.1", "127.0.0.1"),  # make ui, another server on the default address
        ("0.0.0.0", "127.0.0.1"),  # a server on every interface holds loopback too
        # IPv4 and IPv6 ports never conflict: only the loopback probe sees this one (a browser
        # opening localhost may land on it). Without IPv6 on the machine, the IPv4 case again.
        ("::1" if ipv6_loopback() else "127.0.0.1", "localhost"),
    ],
)
def test_a_listener_on_the_port_gets_no_credential_and_the_ui_fails_at_once(stranger_host, host, account, capsys):
    stranger = Stranger(stranger_host)
    try:
        started = time.monotonic()
        with pytest.raises(CAEError, match=rf"^\S+:{stranger.port} is in use by another server; pass PORT="):
            serve("a-study", host=host, port=stranger.port, auth=True)
        assert time.monotonic() - started < 5
        assert stranger.requests == []  # no probe, no login: nothing at all reached it
        assert "MLflow UI" not in capsys.readouterr().out  # no other server's address printed as ours
    finally:
        stranger.stop()


def test_make_ui_on_a_busy_port_exits_non_zero_in_a_second_naming_the_port(account, capsys):
    stranger = Stranger()
    try:
        started = time.monotonic()
        assert main(["ui", "--host", "0.0.0.0", "--port", str(stranger.port)]) == 2
        assert time.monotonic() - started < 5
        err = capsys.readouterr().err.strip()
        assert (
            err == f"error: 0.0.0.0:{stranger.port} is in use by another server; pass PORT= with a free port (--port)"
        )
        assert stranger.requests == []
    finally:
        stranger.stop()


def test_the_port_is_ours_from_the_check_until_the_server_is_stopped():
    """Bound and listening here before the server starts: no other program can take it in between, on
    the address or on loopback beside a wildcard, so whatever answers there is our own server."""
    with listen("0.0.0.0", 0) as sock:
        port = sock.getsockname()[1]
        # Loopback beside our wildcard: refused by Linux; BSD and macOS let a more specific bind in
        # (SO_REUSEADDR), the one race that remains there (see cae/ui.py).
        for address in ("0.0.0.0", "127.0.0.1") if sys.platform == "linux" else ("0.0.0.0",):
            with pytest.raises(OSError):
                Stranger(address, port)
        with pytest.raises(CAEError, match=f"0.0.0.0:{port} is in use"):
            listen("0.0.0.0", port)
    Stranger("127.0.0.1", port).stop()  # free again once closed


def test_a_server_that_dies_before_answering_is_an_error_at_once_and_nobody_else_answers(monkeypatch):
    """Our server exits while the port is still held here: the probe gets no answer from anyone else,
    not even from an HTTP proxy of the environment, and the exit is reported within seconds."""
    proxy = Stranger()
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        with listen("127.0.0.1", 0) as sock:
            process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdin=sock.fileno())
            started = time.monotonic()
            with pytest.raises(CAEError, match="mlflow server exited with status 3 before answering"):
                wait_until_up(f"http://127.0.0.1:{sock.getsockname()[1]}", process, timeout=120)
            assert time.monotonic() - started < 10
        assert proxy.requests == []
    finally:
        proxy.stop()


def test_a_port_left_in_time_wait_by_the_last_run_is_free():
    """Connections of a stopped server linger in TIME_WAIT for a minute; they do not hold the port
    (SO_REUSEADDR, as every server sets it), only a listener does."""
    with listen("127.0.0.1", 0) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    with listen("127.0.0.1", port):
        pass


# ---- make dashboard -----------------------------------------------------------------------------


def tiny_study(storage: str, name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=name, storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


def request(url: str, method: str = "GET", host: str | None = None) -> int:
    headers = {"Host": host} if host else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def dashboard(tmp_path, monkeypatch):
    """A local dashboard (no login) on a study, its storage given as CAE_STORAGE; yields (url, port, storage)."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tiny_study(storage, "kept")
    monkeypatch.setenv("CAE_STORAGE", storage)
    server = make_dashboard(None, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}", port, storage
    server.shutdown()
    server.server_close()


def test_a_local_dashboard_refuses_a_foreign_host_header_and_keeps_the_study(dashboard):
    url, port, storage = dashboard
    study_id = optuna.storages.RDBStorage(storage).get_study_id_from_name("kept")
    # DNS rebinding: the browser of someone who opened attacker.example calls 127.0.0.1 under that name.
    for host in (f"attacker.example:{port}", "attacker.example", f"localhost.attacker.example:{port}"):
        assert request(f"{url}/api/studies/{study_id}", "DELETE", host) == 403
        assert request(f"{url}/api/studies", host=host) == 403
    # A local name on another port, or none at all, is not this server's either.
    assert request(f"{url}/api/studies", host=f"localhost:{port + 1}") == 403
    assert request(f"{url}/api/studies", host="localhost") == 403
    assert optuna.get_all_study_names(storage) == ["kept"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert request(f"{url}/api/studies", host=host) == 200
    with urllib.request.urlopen(f"{url}/api/studies", timeout=30) as response:  # urllib's own Host header
        assert [s["study_name"] for s in json.load(response)["study_summaries"]] == ["kept"]


def test_a_dashboard_on_a_busy_port_is_a_one_line_error_at_once(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tiny_study(storage, "s")
    stranger = Stranger()
    try:
        started = time.monotonic()
        with pytest.raises(CAEError, match=rf"^127\.0\.0\.1:{stranger.port} is in use by another server; pass PORT="):
            make_dashboard(storage, "127.0.0.1", stranger.port)
        assert main(["dashboard", "--storage", storage, "--port", str(stranger.port)]) == 2
        assert time.monotonic() - started < 5
        assert capsys.readouterr().err.strip().startswith(f"error: 127.0.0.1:{stranger.port} is in use")
        assert stranger.requests == []
    finally:
        stranger.stop()


def test_the_dashboard_reads_its_storage_from_the_environment_and_an_argument_wins(tmp_path, monkeypatch):
    from cae.dashboard import storage_url

    monkeypatch.delenv("CAE_STORAGE", raising=False)
    assert storage_url(None).endswith("/optuna.db") and storage_url(None).startswith("sqlite:///")
    monkeypatch.setenv("CAE_STORAGE", "postgresql://cae:secret@db/optuna")
    assert storage_url(None) == "postgresql://cae:secret@db/optuna"
    assert storage_url(f"sqlite:///{tmp_path}/o.db") == f"sqlite:///{tmp_path}/o.db"
