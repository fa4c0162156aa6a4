"""`cae ui`: the MLflow UI (an `mlflow server`) on the project's tracking store.

Started lean: one web worker and no background job consumers (``mlflow server`` otherwise starts
4 workers and 7 job consumers, ~1.9 GB and ~50 s on a 2-core machine; lean, ~0.5 GB in ~9 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cae.errors import CAEError
from cae.paths import ensure_dir, runs_dir
from cae.tracking import Tracker, tracking_uri
from cae.urls import with_driver


def server_command(
    backend_uri: str, host: str, port: int, artifacts: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a lean ``mlflow server`` on ``backend_uri``."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow is None:
        raise CAEError("the `mlflow` command is not installed in this environment; run `make setup`")
    artifacts = artifacts or ensure_dir(runs_dir() / "mlartifacts")
    argv = [
        mlflow, "server", "--backend-store-uri", with_driver(backend_uri),
        "--artifacts-destination", artifacts.as_uri(), "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
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


def serve(study: str | None, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Serve the UI until Ctrl-C; prints the address of the study's runs table."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"MLFLOW_TRACKING_URI is a server already: open {uri}")
        return 0
    tracker = Tracker(uri)
    argv, env = server_command(uri, host, port)
    process = subprocess.Popen(argv, env=env)
    try:
        wait_until_up(f"http://{host}:{port}", process)
        print(
            f"\nMLflow UI: {tracker.ui_url(study, host, port)}\n"
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
