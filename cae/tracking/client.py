"""The tracking store: experiments, runs by id, and the queries the harness needs."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from cae.environ import scoped_env
from cae.errors import CAEError, causes, disk_full_message, first_line, no_space
from cae.locks import creating_schema
from cae.paths import ensure_dir, project_root, runs_dir
from cae.search.outage import patience
from cae.tracking.auth import read_credentials
from cae.tracking.outbox import Outbox, resend
from cae.tracking.run import Run
from cae.tracking.system import check_system_metrics
from cae.tracking.watch import Patient, TrackingUnavailable, Watched, bound_http
from cae.urls import has_password, shown, sqlite_file, with_driver


def default_tracking_uri() -> str:
    """``sqlite:///<repo>/runs/mlflow.db``: absolute, so every working directory sees one store."""
    return f"sqlite:///{runs_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """A tracking store: the default SQLite file under ``runs/``, or ``MLFLOW_TRACKING_URI``."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self._outbox: Outbox | None = None
        if _is_remote(self.uri) and has_password(self.uri):
            # It would be printed, passed to worker command lines and shown in process lists.
            raise CAEError(
                "the MLflow tracking URI contains a password: put it in MLFLOW_TRACKING_USERNAME / "
                "MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials (mode 600) instead"
            )
        if sqlite_file(self.uri) is not None:
            ensure_dir(sqlite_file(self.uri).parent)
        if _is_remote(self.uri):
            bound_http()  # a server that stops answering: minutes per try at MLflow's default timeout
        # A database server's restart is waited out (a bad CAE_STORAGE_PATIENCE is said here, as itself).
        wait = None if _is_remote(self.uri) or sqlite_file(self.uri) else patience()
        # MLflow says "Creating initial MLflow database tables..." at INFO on a new store; the study's
        # own line names the store, so a first run's output starts with what the harness does.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        try:
            # A database store connects (and creates its tables) right here: one process at a time.
            with creating_schema(self.uri):
                client = MlflowClient(tracking_uri=with_driver(self.uri))
                # A server's every call is watched: a silent one is said, and gives up within the bounds.
                if _is_remote(self.uri):
                    self.client = Watched(client, self.uri)
                else:  # a local file has no server to restart
                    self.client = client if wait is None else Patient(client, self.uri, wait)
                if sqlite_file(self.uri):
                    self.client.search_experiments(max_results=1)  # the tables exist now, under the lock
        except Exception as err:
            full = no_space(err)
            if full:  # creating the store's tables on a full disk is no bad URI
                raise CAEError(f"MLflow store {self.shown}: {disk_full_message(full)}") from None
            from sqlalchemy.exc import OperationalError

            first = shown(first_line(err))
            reached = any(isinstance(c, OperationalError) for c in causes(err))
            what = "unreachable or refused the login" if reached else "invalid"
            raise CAEError(f"MLflow tracking store {self.shown} is {what}: {first}") from None

    @property
    def silent(self) -> bool:
        """True while the tracking server has stopped answering (a call gave up): skip closing calls."""
        return bool(getattr(self.client, "silent", False))

    def answering(self, what: str) -> Any:
        """A context in which waiting on the server is said (:meth:`Watched.answering`); a no-op for local stores."""
        return self.client.answering(what) if isinstance(self.client, Watched) else nullcontext()

    @property
    def shown(self) -> str:
        """The URI without a password, for every message and tag (a database URI may hold one)."""
        return shown(self.uri)

    @property
    def driver_uri(self) -> str:
        """The URI as SQLAlchemy and MLflow's global functions need it (``postgresql+psycopg2://``)."""
        return with_driver(self.uri)

    def check(self) -> Tracker:
        """Fail fast (one line, before any training or run) on a store that cannot be reached or
        refuses the credentials, a too widely readable credentials file, or a bad system-metrics flag."""
        check_system_metrics()
        if _is_remote(self.uri):
            read_credentials()
        try:
            # One quick try: a store that is down is said at once, not after MLflow's minutes of retries.
            with scoped_env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}):
                getattr(self.client, "unwatched", self.client).search_experiments(max_results=1)
        except Exception as err:
            from mlflow.exceptions import MlflowException

            first = first_line(err)
            if isinstance(err, MlflowException) and err.get_http_status_code() in (401, 403):
                raise CAEError(
                    f"MLflow tracking server {self.shown} refused the credentials ({first}); set "
                    "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials (mode 600)"
                ) from None
            raise CAEError(
                f"MLflow tracking store {self.shown} is unreachable ({shown(first)}); start the server or fix "
                "MLFLOW_TRACKING_URI (unset it to use the local runs/mlflow.db)"
            ) from None
        sent = resend(self.client)  # what an earlier command's server did not take
        if sent:
            print(
                f"note: sent {sent} per-epoch metric value(s) an earlier command had kept in runs/outbox/", flush=True
            )
        return self

    @property
    def outbox(self) -> Outbox:
        """This store's queue of per-epoch metrics (one sender thread, started on first use)."""
        if self._outbox is None:
            self._outbox = Outbox(self.client, silent=lambda: self.silent)
        return self._outbox

    # ---- experiments and runs -----------------------------------------------------------------

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted" and create:
                # Deleted in the UI, then the study is run again: bring it back rather than fail.
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        if not create:
            return None
        # Local stores keep artifacts under runs/ (MLflow would otherwise use ./mlruns of the
        # working directory); a tracking server decides for itself.
        location = None if _is_remote(self.uri) else ensure_dir(runs_dir() / "mlartifacts" / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except TrackingUnavailable:  # asking again would wait the bounds out once more
            raise
        except Exception:  # created meanwhile by another worker
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def retire_experiment(self, name: str) -> bool:
        """Rename the experiment ``name`` out of the way and delete it (MLflow keeps it in its trash);
        a new study of that name then starts a fresh experiment instead of restoring this one."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return False
        self.client.rename_experiment(exp.experiment_id, f"{name} (deleted {time.strftime('%Y-%m-%d %H:%M:%S')})")
        if exp.lifecycle_stage != "deleted":
            self.client.delete_experiment(exp.experiment_id)
        return True

    def delete_registered_model(self, name: str) -> bool:
        """Delete the registered model ``name`` and its versions; False if there is none."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(name)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def start_run(
        self,
        experiment: str,
        name: str,
        *,
        tags: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Run:
        tags = {k: shown(str(v)) for k, v in (tags or {}).items()}  # passwords masked, as for every tag
        tags.setdefault("git_commit", git_commit())
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = Run(self, self.client.create_run(self.experiment_id(experiment), tags=tags, run_name=name).info.run_id)
        run.start_system_metrics()
        return run

    def resume_run(self, run_id: str) -> Run:
        self.client.update_run(run_id, status="RUNNING")
        run = Run(self, run_id)
        run.start_system_metrics()
        return run

    def run_exists(self, run_id: str) -> bool:
        """Whether the store has the run; any other failure (the store away) is raised, not "no":
        a caller would otherwise discard the run's checkpoint and start again."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
            return True
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise

    def study_parent(self, study: str, tags: Mapping[str, Any], uid: str | None = None) -> Run:
        """The study's parent run, reused when a search resumes (status back to RUNNING).

        ``uid`` identifies one Optuna study: a new study that reuses an old name (another
        storage, a deleted database) gets a parent run of its own instead of the old one's.
        """
        existing = self.find_study_parent(study, uid)
        if existing is not None:
            return self.resume_run(existing)
        extra = {"study_uid": uid} if uid else {}
        return self.start_run(study, study, tags={**tags, **extra, "study": study, "cae.role": "study"})

    def find_study_parent(self, study: str, uid: str | None = None) -> str | None:
        """The study's parent run id: the one with ``uid`` if given, else the most recent."""
        exp_id = self.experiment_id(study, create=False)
        if exp_id is None:
            return None
        where = "tags.`cae.role` = 'study'" + (f" and tags.study_uid = '{uid}'" if uid else "")
        runs = self.client.search_runs(
            [exp_id], filter_string=where, order_by=["attributes.start_time DESC"], max_results=1
        )
        return runs[0].info.run_id if runs else None

    def child_runs(self, parent_id: str, experiment: str) -> list[Any]:
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def close_orphans(
        self, parent_id: str, experiment: str, still_running: set[int], runs: list[Any] | None = None
    ) -> int:
        """End child runs left RUNNING by a killed worker whose trial is no longer running.

        ``runs``: the child runs as listed *before* the trial states were read (default: listed
        now), so a trial another host starts meanwhile is not taken for a dead one. Returns how
        many were closed. They end KILLED with ``trial_state=FAIL``, keeping the curve they had.
        """
        closed = 0
        for run in runs if runs is not None else self.child_runs(parent_id, experiment):
            number = run.data.tags.get("trial_number")
            if run.info.status == "RUNNING" and number is not None and int(number) not in still_running:
                Run(self, run.info.run_id).set_tags(
                    {"trial_state": "FAIL", "error": "worker died during the trial (no heartbeat)"}
                )
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
        return closed

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        """A run's artifact file or folder, copied under ``dst``; returns its local path."""
        with scoped_env({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):  # a bar for two small files is noise
            return Path(self.client.download_artifacts(run_id, path, str(dst)))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]

    def get_run(self, run_id: str) -> Any:
        try:
            return self.client.get_run(run_id)
        except Exception:
            raise CAEError(f"no MLflow run {run_id!r} in {self.shown}") from None

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments()]

    def ui_url(self, study: str | None, host: str, port: int) -> str:
        """The UI address that opens the runs table ("Model training" mode), not GenAI traces."""
        base = f"http://{host}:{port}"
        exp_id = self.experiment_id(study, create=False) if study else None
        if exp_id is None:
            return base
        return f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
