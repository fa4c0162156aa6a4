"""`make ui`: a real MLflow server on a free port lists the study's parent and child runs."""

import json
import socket
import subprocess
import urllib.request

from cae.tracking import Tracker
from cae.ui import server_command, wait_until_up

from .studies import tiny_search


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_study_runs(tmp_path_factory, tracking_uri):
    tiny_search(tmp_path_factory.mktemp("ui"), "ui-study", trials=2)
    tracker = Tracker(tracking_uri)
    port = free_port()
    argv, env = server_command(tracking_uri, "127.0.0.1", port)
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server, timeout=180)
        exp_id = tracker.experiment_id("ui-study", create=False)
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode()
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            runs = json.load(response)["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
        parents = [t for t in tags if t.get("cae.role") == "study"]
        children = [t for t in tags if "mlflow.parentRunId" in t]
        assert len(parents) == 1 and len(children) == 2
        assert tracker.ui_url("ui-study", "127.0.0.1", port).endswith(
            f"#/experiments/{exp_id}/runs?workflowType=machine_learning"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
