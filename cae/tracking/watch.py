"""How long the harness waits for an MLflow tracking server, and what the user sees meanwhile.

The bounds are MLflow's own: each request waits ``MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds for an
answer and is retried ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` times with exponential backoff
(``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``). With MLflow's retries and backoff a server that refuses
connections while it restarts is ridden out for about four minutes. The harness lowers only the
timeout, where the user has not set it: at MLflow's 120 s per try a server that accepts connections
and never answers would hold a search for over 20 minutes without a word.

Every call of a server's client goes through :class:`Watched`: one monitor thread per client says
when a call has waited ``NOTE_AFTER`` seconds (and again every minute), and when the server answers
again; a call the client gave up on is :class:`TrackingUnavailable`, one line.

A store on a database server (``postgresql://``, ``mysql://``) has no such retries: MLflow answers a
lost or refused connection with ``TEMPORARILY_UNAVAILABLE`` at once. :class:`Patient` tries such a call
again, as the study storage does (``CAE_STORAGE_PATIENCE``), so a database restart does not fail the
trial that was logging.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cae.errors import CAEError, first_line
from cae.search.outage import MAX_BACKOFF, PATIENCE_ENV
from cae.urls import shown

HTTP_TIMEOUT = "20"  # seconds per try, where the user has not set MLFLOW_HTTP_REQUEST_TIMEOUT
NOTE_AFTER = 10.0  # seconds without an answer before the first line (less if the timeout is shorter)
NOTE_EVERY = 60.0  # seconds between the lines while it stays silent


class TrackingUnavailable(CAEError):
    """The tracking server did not answer one call within the bounds: the search stops; the study is intact."""


def bound_http() -> None:
    """MLflow's per-try timeout where the user has not set one, in the environment (worker processes and
    MLflow's own threads read it there)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT)


def _setting(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def bounds_text() -> str:
    """``8 tries of 20 s (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, MLFLOW_HTTP_REQUEST_TIMEOUT=20)``: the bounds in force."""
    timeout = _setting("MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
    retries = _setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7)
    return (
        f"{retries + 1} tries of {timeout} s (MLFLOW_HTTP_REQUEST_MAX_RETRIES={retries}, "
        f"MLFLOW_HTTP_REQUEST_TIMEOUT={timeout})"
    )


def unanswered(err: BaseException) -> str | None:
    """A few words for a request the client gave up on (in ``err`` or the errors it was raised from), else None.

    By the type of the ``requests`` / ``urllib3`` error under MLflow's: any other error, slow or not
    (a 404 of a slow server, a full disk while downloading), is no silence.
    """
    import requests.exceptions as rq
    import urllib3.exceptions as u3

    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (u3.NewConnectionError, ConnectionRefusedError)):  # urllib3 files it under timeouts
            return "connection refused"
        if isinstance(cause, (rq.Timeout, u3.TimeoutError)):
            return "no answer"
        if isinstance(cause, u3.MaxRetryError):
            return unanswered(cause.reason) if cause.reason is not None else "no answer"
        if isinstance(cause, (u3.ProtocolError, ConnectionError)):
            return "connection dropped"
        if isinstance(cause, rq.ConnectionError):
            inner = next((a for a in cause.args if isinstance(a, BaseException)), None)
            return (unanswered(inner) if inner is not None else None) or "connection dropped"
        cause = cause.__cause__ or cause.__context__
    return None


def _note_after() -> float:
    return max(1.0, min(NOTE_AFTER, float(_setting("MLFLOW_HTTP_REQUEST_TIMEOUT", 120))))


def _say(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


class _Client:
    """An ``MlflowClient`` (``unwatched``) whose public calls go through :meth:`_call`; attributes pass through."""

    unwatched: Any

    def __getattr__(self, name: str) -> Any:
        client = self.__dict__.get("unwatched")
        if client is None:  # copy / pickle look attributes up before __init__ ran
            raise AttributeError(name)
        value = getattr(client, name)
        if not callable(value) or name.startswith("_"):
            return value
        return functools.partial(self._call, name, value)

    def _call(self, name: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class Watched(_Client):
    """An ``MlflowClient`` whose every call is watched by :meth:`answering`; attributes pass through.

    ``silent`` is True after a call gave up unanswered, until one is answered again: a run's closing
    calls are then skipped (the next search closes the run) instead of waiting the bounds out again.
    """

    def __init__(self, client: Any, server: str):
        self.unwatched = client  # for a call that must not be watched (a quick probe of its own bounds)
        self.server = shown(server)
        self.silent = False
        self._calls: dict[int, list[Any]] = {}  # call id -> [what, start, last said]
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def _call(self, name: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        with self.answering(name):
            return method(*args, **kwargs)

    def _watch(self) -> None:
        """The monitor: one line for each call that has waited long enough, and every minute after."""
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                due = [c for c in self._calls.values() if now - c[2] >= (NOTE_EVERY if c[2] > c[1] else _note_after())]
                for c in due:
                    c[2] = now
            for what, start, _ in due:
                _say(
                    f"MLflow tracking server {self.server} has not answered for {now - start:.0f} s ({what}); "
                    f"still trying, at most {bounds_text()}"
                )

    @contextmanager
    def answering(self, what: str) -> Iterator[None]:
        """Say so while ``what`` waits for the server; a call the client gave up on after waiting raises
        :class:`TrackingUnavailable` (one line) instead of the client's retry traceback."""
        start = time.monotonic()
        key = next(self._ids)
        with self._lock:
            self._calls[key] = [what, start, start]
            if self._monitor is None:
                self._monitor = threading.Thread(target=self._watch, name="cae-tracking-watch", daemon=True)
                self._monitor.start()
        try:
            yield
        except Exception as err:
            waited, cause = time.monotonic() - start, unanswered(err)
            if waited < _note_after() or cause is None:
                raise
            self.silent = True
            raise TrackingUnavailable(
                f"MLflow tracking server {self.server} did not answer for {waited:.0f} s ({what}: {cause}); "
                "the study is intact: run the same command again once it answers"
            ) from None
        finally:
            with self._lock:
                _, _, said = self._calls.pop(key)
        self.silent = False
        if said > start:
            _say(f"MLflow tracking server {self.server} answered after {time.monotonic() - start:.0f} s ({what})")


def _said_here(record: Any) -> bool:
    from sqlalchemy.exc import OperationalError

    return not (record.exc_info and isinstance(record.exc_info[1], OperationalError))


class Patient(_Client):
    """An ``MlflowClient`` on a database server whose calls wait out the database's absence (a restart,
    a failover) for up to ``CAE_STORAGE_PATIENCE`` seconds: one line when it goes, one when it is back,
    past the patience :class:`TrackingUnavailable`. Only ``TEMPORARILY_UNAVAILABLE``, MLflow's code for a
    database error of the connection's kind, is tried again; attributes pass through."""

    def __init__(self, client: Any, store: str, patience: float):
        import logging

        self.unwatched = client  # the start's quick probe fails at once instead
        self.store, self.patience = shown(store), patience
        self.since: float | None = None
        # MLflow logs each such error with its traceback before raising it; this class says it in one line.
        logger = logging.getLogger("mlflow.store.db.utils")
        if _said_here not in logger.filters:
            logger.addFilter(_said_here)

    def _call(self, name: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        first, backoff = None, 0.5
        while True:
            try:
                result = method(*args, **kwargs)
            except MlflowException as err:
                if err.error_code != "TEMPORARILY_UNAVAILABLE":
                    raise
                now = time.monotonic()
                first = first or now
                if self.since is None:
                    self.since = now
                    _say(
                        f"MLflow store {self.store} unreachable ({first_line(err)}); retrying for up to "
                        f"{self.patience:.0f} s ({PATIENCE_ENV})"
                    )
                if now - first >= self.patience:
                    raise TrackingUnavailable(
                        f"MLflow store {self.store} unreachable for {self.patience:.0f} s ({name}: "
                        f"{first_line(err)}); the study is intact: run the same command again once it is back"
                    ) from None
                time.sleep(min(backoff, self.patience))
                backoff = min(2 * backoff, MAX_BACKOFF)
                continue
            if self.since is not None:
                _say(f"MLflow store {self.store} is back after {time.monotonic() - self.since:.0f} s")
                self.since = None
            return result


__all__ = ["HTTP_TIMEOUT", "Patient", "TrackingUnavailable", "Watched", "bound_http", "bounds_text", "unanswered"]
