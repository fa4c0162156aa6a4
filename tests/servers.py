"""Real services for the scale and crash tests: a throwaway PostgreSQL cluster and an `mlflow server`.

Both bind a free port on 127.0.0.1 and are stopped (and their files removed) by their fixtures in
``tests/conftest.py``. PostgreSQL refuses to run as root, and CI runs as root: there every
PostgreSQL command goes through ``runuser -u postgres --`` on a data directory owned by postgres.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cae.ui import server_command, wait_until_up


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` live: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # /usr/local/bin/initdb links into the versioned folder
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Postgres:
    """A PostgreSQL cluster in a temporary directory, trust authentication on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path (mode 0700 for root) nor a root-only TMPDIR: the postgres
        # user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="cae-pg-", dir="/tmp" if self.as_root else None))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str, timeout: float = 120) -> None:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}\n"
                f"server log:\n{_tail(self.log)}"
            )

    def start(self) -> Postgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        # Throwaway data: no fsync; the socket file stays in our directory, not /var/run/postgresql.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop_server(self) -> None:
        """Stop the server as a routine restart does (``-m fast``: clients are disconnected), keeping
        its data; connections are refused until :meth:`start_again`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=90)

    def start_again(self) -> None:
        """Start the stopped server on the same port and data; returns once it accepts connections."""
        self._pg_ctl_start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database; returns its SQLAlchemy URL (the Optuna / MLflow storage)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """A lean ``mlflow server`` (``cae.ui.server_command``) on ``backend_uri``."""

    def __init__(self, backend_uri: str, artifacts: Path, log: Path):
        self.backend_uri, self.artifacts, self.log_path = backend_uri, artifacts, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log: Any = None

    def start(self, timeout: float = 180, append_log: bool = False) -> MlflowServer:
        argv, env = server_command(self.backend_uri, "127.0.0.1", self.port, self.artifacts)
        self.log = self.log_path.open("a" if append_log else "w")
        self.process = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        started = time.monotonic()
        try:
            wait_until_up(self.url, self.process, timeout=timeout)
        except Exception as err:
            self.stop()
            raise RuntimeError(f"{err}\nserver log:\n{_tail(self.log_path, 30)}") from None
        self.seconds_to_start = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Its own session: the signal reaches the web worker it forked, too.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self.log is not None:
            self.log.close()

    def start_again(self, timeout: float = 180) -> MlflowServer:
        """After :meth:`stop`: the same server (port, store, artifacts) again, its log appended to."""
        return self.start(timeout=timeout, append_log=True)


class SlowProxy:
    """An HTTP proxy on a free 127.0.0.1 port that holds every request ``delay`` seconds, then forwards it.

    Stands in for a slow or stalled tracking server (a busy host, a far network) in front of a real one.
    ``delay`` may be changed while it runs; ``requests`` counts what it forwarded. While ``stalled``
    is set, requests get no answer at all (a hung server): each is held until the stall ends, then
    dropped unanswered (its client has given up by then; forwarding it late would run it twice).
    """

    def __init__(self, target: str, delay: float):
        import http.server
        import threading
        import urllib.error
        import urllib.request

        proxy = self
        self.target, self.delay, self.requests = target.rstrip("/"), delay, 0
        self.stalled = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if proxy.stalled:
                    while proxy.stalled:
                        time.sleep(0.1)
                    self.close_connection = True
                    return
                time.sleep(proxy.delay)
                proxy.requests += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, reply, content = response.status, response.headers, response.read()
                except urllib.error.HTTPError as err:
                    status, reply, content = err.code, err.headers, err.read()
                self.send_response(status)
                for key, value in reply.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SlowProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
