"""The viewers and the tracking server: `make ui` (plain and secured), `make dashboard` on every storage
form, and what a slow tracking server costs training (nothing but the logging it needs)."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import optuna
import pytest

from cae.dashboard import make_dashboard
from cae.errors import CAEError
from cae.tracking import Tracker
from cae.ui import listen, needs_auth, server_command, started_server, wait_until_up
from cae.urls import is_local_host, with_driver

from .servers import SlowProxy
from .studies import tiny_search


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_study_runs(tmp_path_factory, tracking_uri):
    tiny_search(tmp_path_factory.mktemp("ui"), "ui-study", trials=2)
    tracker = Tracker(tracking_uri)
    with listen("127.0.0.1", 0) as sock, started_server(tracking_uri, sock, output=subprocess.DEVNULL) as server:
        wait_until_up(server.url, server.process, timeout=180)
        exp_id = tracker.experiment_id("ui-study", create=False)
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode()
        request = urllib.request.Request(
            f"{server.url}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            runs = json.load(response)["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs]
        parents = [t for t in tags if t.get("cae.role") == "study"]
        children = [t for t in tags if "mlflow.parentRunId" in t]
        assert len(parents) == 1 and len(children) == 2
        assert tracker.ui_url("ui-study", "127.0.0.1", server.port).endswith(
            f"#/experiments/{exp_id}/runs?workflowType=machine_learning"
        )

        # DNS rebinding: a web page that makes the browser call the UI under its own name is refused by
        # MLflow's default --allowed-hosts (nothing of ours is needed for it); the same names of this
        # machine are served.
        def status(path: str, host: str, data: bytes | None = None) -> int:
            headers = {"Host": host, "Content-Type": "application/json"}
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(f"{server.url}{path}", data=data, headers=headers), timeout=30
                ) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

        delete = json.dumps({"experiment_id": exp_id}).encode()
        assert status("/api/2.0/mlflow/experiments/delete", f"attacker.example:{server.port}", delete) == 403
        assert status("/api/2.0/mlflow/experiments/search?max_results=1", f"attacker.example:{server.port}") == 403
        assert status("/", f"attacker.example:{server.port}") == 403
        assert tracker.client.get_experiment(exp_id).lifecycle_stage == "active"  # not deleted
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
            assert status("/api/2.0/mlflow/experiments/search?max_results=1", host) == 200


# ---- the secured server (make ui HOST=0.0.0.0) -------------------------------------------------

PASSWORD = "a-test-password-1234"


@pytest.mark.slow
def test_a_network_server_refuses_anonymous_clients_and_logs_an_authenticated_worker(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("secured")
    monkeypatch.setenv("HOME", str(root))  # no ~/.mlflow/credentials of the machine
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cae-admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    backend = f"sqlite:///{root}/mlflow.db"
    argv, _ = server_command(backend, "127.0.0.1", 5000, root / "artifacts", auth=True, auth_dir=root / "auth")
    assert PASSWORD not in " ".join(argv) and "basic-auth" in argv
    assert stat.S_IMODE((root / "auth").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "auth" / "flask-secret").stat().st_mode) == 0o600
    with (
        listen("127.0.0.1", 0) as sock,
        started_server(
            backend, sock, root / "artifacts", auth=True, auth_dir=root / "auth", output=subprocess.DEVNULL
        ) as server,
    ):
        url = server.url
        wait_until_up(url, server.process, timeout=180)
        assert PASSWORD not in " ".join(server.process.args)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=5", timeout=30)
        assert refused.value.code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(CAEError, match="refused the credentials"):
            Tracker(url).check()
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        tiny_search(root, "secured", trials=2)
        tracker = Tracker(url)
        runs = tracker.child_runs(tracker.find_study_parent("secured"), "secured")
        assert len(runs) == 2 and all(r.info.status in ("FINISHED", "KILLED") for r in runs)
        assert all(PASSWORD not in v for r in runs for v in r.data.tags.values())
        from cae.search.best import read_best

        assert read_best("secured")["registered_model"] == {"name": "secured", "version": 1}  # through the server


# ---- optuna-dashboard on every storage form ----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True), ("::1", True),
     ("[::1]", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("", False),
     ("127.evil.com", False), ("127.0.0.1.nip.io", False), ("localhost.evil.com", False), ("10.0.0.5", False),
     ("my-host", False), ("128.0.0.1", False)],
)  # fmt: skip
def test_only_loopback_addresses_and_localhost_count_as_local(host, local):
    assert is_local_host(host) is local
    assert needs_auth(host) is not local  # the UI and the dashboard decide with the same function


def test_a_dashboard_open_to_the_network_without_an_account_does_not_start(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of the machine
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    tiny_optuna_study(f"sqlite:///{tmp_path}/o.db", "open")
    with pytest.raises(CAEError, match=r"a dashboard open to the network \(HOST=0\.0\.0\.0\) needs a login: set "):
        make_dashboard(f"sqlite:///{tmp_path}/o.db", "0.0.0.0", 0)
    with pytest.raises(CAEError, match="needs a login"):
        make_dashboard(f"sqlite:///{tmp_path}/o.db", "127.evil.com", 0)


def dashboard_request(url: str, method: str = "GET", login: tuple[str, str] | None = None) -> tuple[int, bytes]:
    import base64

    headers = {"Authorization": "Basic " + base64.b64encode(":".join(login).encode()).decode()} if login else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow
def test_a_dashboard_on_all_interfaces_refuses_anonymous_requests(tmp_path):
    """A real `cae dashboard --host 0.0.0.0` process: anonymous reads and deletes are 401; the login works."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tiny_optuna_study(storage, "guarded")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_USERNAME": "cae-admin",
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    }
    argv = [sys.executable, "-m", "cae", "dashboard", "--storage", storage, "--host", "0.0.0.0", "--port", str(port)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until it listens (any answer)
            try:
                status, _ = dashboard_request(f"{url}/api/studies")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.5)
        assert status == 401
        assert dashboard_request(f"{url}/api/studies/1", "DELETE")[0] == 401
        assert dashboard_request(f"{url}/api/studies/1", "DELETE", ("cae-admin", "wrong-password-123"))[0] == 401
        assert dashboard_request(f"{url}/", login=("cae-admin", "wrong-password-123"))[0] == 401
        assert optuna.get_all_study_names(storage) == ["guarded"]  # nothing deleted
        status, body = dashboard_request(f"{url}/api/studies", login=("cae-admin", PASSWORD))
        assert status == 200 and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["guarded"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def tiny_optuna_study(storage, name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=2)


def study_names(url: str, deadline: float) -> list[str]:
    """``/api/studies`` of a dashboard, polled until it answers."""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/studies", timeout=10) as response:
                return [s["study_name"] for s in json.load(response)["study_summaries"]]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_make_dashboard_answers_on_a_journal_storage_given_in_the_environment(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "study.log"
    tiny_optuna_study(optuna.storages.JournalStorage(JournalFileBackend(str(journal))), "journaled")
    port = free_port()
    # The storage in the environment (CAE_STORAGE), as `make` hands it over: never in a command line.
    argv = [sys.executable, "-m", "cae", "dashboard", "--port", str(port)]
    env = {**os.environ, "CAE_STORAGE": f"journal:///{journal}"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert study_names(f"http://127.0.0.1:{port}", time.monotonic() + 120) == ["journaled"]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_answers_on_a_postgresql_storage_and_refuses_an_empty_one(postgres):
    url = postgres.create_database("dashboard")  # postgresql://: the driver is added by cae.urls
    tiny_optuna_study(with_driver(url), "on-postgres")
    server = make_dashboard(url, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        names = study_names(f"http://127.0.0.1:{server.server_address[1]}", time.monotonic() + 60)
        assert names == ["on-postgres"]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(CAEError, match="cannot read Optuna storage"):
        make_dashboard(postgres.create_database("no_study_here"), "127.0.0.1", 0)


def test_dashboard_on_a_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(CAEError, match="no study storage at"):
        make_dashboard(f"sqlite:///{tmp_path}/none.db", "127.0.0.1", 0)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(CAEError, match="does not exist"):
        make_dashboard(f"journal:///{tmp_path}/none.log", "127.0.0.1", 0)


# ---- a slow tracking server (issue 18) ---------------------------------------------------------


@pytest.mark.slow
def test_a_slow_tracking_server_holds_up_no_epoch_and_every_run_ends(mlflow_server):
    proxy = SlowProxy(mlflow_server.url, delay=0.0).start()
    try:
        tracker = Tracker(proxy.url)
        run = tracker.start_run("slow-server", "slow")
        callback = run.epoch_callback()
        proxy.delay = 1.0  # every request now takes a second
        started = time.monotonic()
        for epoch in range(5):
            callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)})
        assert time.monotonic() - started < 0.5  # 5 s if each epoch waited for its request
        run.end()  # waits for the queued points, then ends the run
        proxy.delay = 0.0
        assert tracker.client.get_run(run.run_id).info.status == "FINISHED"
        assert [s for s, _ in tracker.metric_history(run.run_id, "val_loss")] == [1, 2, 3, 4, 5]

        # A process that exits without ending its run still stores what it queued.
        proxy.delay = 0.5
        script = (
            "from cae.tracking import Tracker\n"
            f"run = Tracker({proxy.url!r}).start_run('slow-server', 'exits')\n"
            "for step in range(1, 4):\n"
            "    run.log_metrics({'val_loss': 1.0 / step}, step=step, queued=True)\n"
            "print(run.run_id)\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        proxy.delay = 0.0
        assert [s for s, _ in tracker.metric_history(out.stdout.split()[-1], "val_loss")] == [1, 2, 3]
    finally:
        proxy.stop()
