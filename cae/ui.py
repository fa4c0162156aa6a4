"""`cae ui`: the MLflow UI (an `mlflow server`) on the project's tracking store.

Started lean: one web worker and no background job consumers (``mlflow server`` otherwise starts
4 workers and 7 job consumers, ~1.9 GB and ~50 s on a 2-core machine; lean, ~0.5 GB in ~9 s).

Bound to anything but the loopback interface (``make ui HOST=0.0.0.0``), the server runs MLflow's
basic-auth app: every request needs the account from :mod:`cae.tracking.auth` (environment or a
mode-600 file), so nobody on the network can read, overwrite or delete runs anonymously.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cae.errors import CAEError
from cae.paths import ensure_dir, runs_dir
from cae.tracking import Tracker, tracking_uri
from cae.tracking.auth import auth_server_env
from cae.urls import is_local_host, shown, with_driver


def needs_auth(host: str) -> bool:
    """A server reachable from other machines must authenticate its users (the UI and the dashboard)."""
    return not is_local_host(host)


def server_command(
    backend_uri: str, host: str, port: int, artifacts: Path | None = None, *, auth: bool = False,
    auth_dir: Path | None = None,
) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """argv and environment of a lean ``mlflow server`` on ``backend_uri``; ``auth``: the basic-auth app
    (its user database in ``auth_dir``, default ``runs/auth/``). Secrets go in the environment only."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        raise CAEError("the `mlflow` command is not installed in this environment; run `make setup`")
    artifacts = artifacts or ensure_dir(runs_dir() / "mlartifacts")
    argv = [
        mlflow, "server", "--artifacts-destination", artifacts.as_uri(), "--host", host, "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # The store's URI (a database URL may hold a password) goes in the environment, not in argv.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_BACKEND_STORE_URI": with_driver(backend_uri)}  # fmt: skip
    if auth:
        argv += ["--app-name", "basic-auth"]
        env.update(auth_server_env(auth_dir))
    return argv, env


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``/health`` until the server answers; a one-line error if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CAEError(f"mlflow server exited with status {process.returncode} before answering at {url}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise CAEError(f"mlflow server did not answer at {url}/health within {timeout:.0f} s")


def serve(study: str | None, host: str = "127.0.0.1", port: int = 5000, auth: bool = False) -> int:
    """Serve the UI until Ctrl-C; prints the address of the study's runs table.

    ``auth`` (always on for a non-loopback ``host``): MLflow's basic-auth app.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"MLFLOW_TRACKING_URI is a server already: open {shown(uri)}")
        return 0
    auth = auth or needs_auth(host)
    tracker = Tracker(uri)
    argv, env = server_command(uri, host, port, auth=auth)
    process = subprocess.Popen(argv, env=env)
    try:
        wait_until_up(f"http://{host}:{port}", process)
        if auth:
            _check_login(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}", env)
        user = env.get("MLFLOW_AUTH_ADMIN_USERNAME")
        login = f"  basic auth: user {user}; workers need the same credentials (env or file)\n" if auth else ""
        print(
            f"\nMLflow UI: {tracker.ui_url(study, host, port)}\n{login}"
            "  runs table of the study; select child runs → Compare → val_loss chart.  Ctrl-C stops it.",
            flush=True,
        )
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _check_login(url: str, env: dict[str, str]) -> None:
    """The account exists with this password (it is set on the server's first start only)."""
    import base64

    token = base64.b64encode(f"{env['MLFLOW_AUTH_ADMIN_USERNAME']}:{env['MLFLOW_AUTH_ADMIN_PASSWORD']}".encode())
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Authorization": f"Basic {token.decode()}"}
    )
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise CAEError(
                f"the tracking server refused user {env['MLFLOW_AUTH_ADMIN_USERNAME']!r}: the admin password is "
                f"set on the first start only (database {Path(env['MLFLOW_AUTH_CONFIG_PATH']).parent}/basic_auth.db); "
                "use the password it was created with, or change it in the UI"
            ) from None
        raise
