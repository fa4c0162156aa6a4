"""How long a call to an MLflow tracking server may go unanswered, and what the user sees meanwhile.

MLflow's HTTP client waits 120 s for each answer and retries 7 times, so a server that accepts
connections but stops answering (a hung proxy, a stalled database behind it) held a search for
many minutes without a word. Here every call of the harness's ``MlflowClient`` goes through
:class:`Watched`: after a few seconds without an answer one line says so (and again every minute),
one line says when the server answers again, and for a server over HTTP the client's own timeout
and retries are bounded (``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
defaults below unless set) so that a call gives up after about two minutes with
:class:`TrackingUnavailable`. Training itself never waits: per-epoch metrics are queued
(:mod:`cae.tracking.run`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cae.errors import CAEError
from cae.urls import shown

# Bounds for a server over HTTP, used when the user has not set MLflow's variables: 5 tries of at
# most 20 s each and urllib3's backoff between them (0, 4, 8, 16 s): about 2 minutes in all.
# A server restart (a few seconds of refused connections) is still ridden out by the retries.
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4"}
NOTE_AFTER = 10.0  # seconds without an answer before the first line (less if the timeout is shorter)
NOTE_EVERY = 60.0  # seconds between the lines while it stays silent


class TrackingUnavailable(CAEError):
    """The tracking server did not answer one call within the bounds: the search stops; the study is intact."""


def bound_http() -> None:
    """Set MLflow's per-request timeout and retries to :data:`HTTP_BOUNDS` where the user has not.

    In the environment, so that worker processes and MLflow's background logging threads share them.
    """
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def _setting(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def bounds_text() -> str:
    """``5 tries of 20 s (MLFLOW_HTTP_REQUEST_MAX_RETRIES=4, MLFLOW_HTTP_REQUEST_TIMEOUT=20)``: the bounds in force."""
    timeout = _setting("MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
    retries = _setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7)
    return (
        f"{retries + 1} tries of {timeout} s (MLFLOW_HTTP_REQUEST_MAX_RETRIES={retries}, "
        f"MLFLOW_HTTP_REQUEST_TIMEOUT={timeout})"
    )


# The client gave up on the network (its own text is a URL and a urllib3 repr): these words, in a few.
# Any other error, slow or not (a 404 of a slow server, a full disk while downloading), is no silence.
_CAUSES = {
    "timed out": "no answer",
    "Read timeout": "no answer",
    "Max retries": "no answer",
    "Connection refused": "connection refused",
    "Connection aborted": "connection dropped",
    "RemoteDisconnected": "connection dropped",
    "Connection reset": "connection dropped",
}


def _gave_up(err: BaseException) -> str | None:
    """A few words for a network give-up of the client (in ``err`` or its causes), else None."""
    cause: BaseException | None = err
    for _ in range(6):
        if cause is None:
            return None
        text = str(cause)
        found = next((words for marker, words in _CAUSES.items() if marker in text), None)
        if found:
            return found
        cause = cause.__cause__ or cause.__context__
    return None


_GAVE_UP = threading.Event()  # a call gave up unanswered and none has been answered since


def gave_up() -> bool:
    """True if this process's last word from the tracking server was silence (see ``cae.__main__``)."""
    return _GAVE_UP.is_set()


def _note_after() -> float:
    return max(1.0, min(NOTE_AFTER, float(_setting("MLFLOW_HTTP_REQUEST_TIMEOUT", 120))))


def _say(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


class Watched:
    """An ``MlflowClient`` whose every call is watched by :meth:`answering`; attributes pass through.

    ``silent`` is True after a call gave up unanswered, until one is answered again: a run's closing
    calls are then skipped (the next search closes the run) instead of waiting the bounds out again.
    """

    def __init__(self, client: Any, server: str):
        self._client = client
        self.server = shown(server)
        self.silent = False

    def __getattr__(self, name: str) -> Any:
        client = self.__dict__.get("_client")
        if client is None:  # copy / pickle look attributes up before __init__ ran
            raise AttributeError(name)
        value = getattr(client, name)
        if not callable(value) or name.startswith("_"):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            # A queued call (synchronous=False) returns at once: it says nothing about the server.
            with self.answering(name, reaches_server=kwargs.get("synchronous", True) is not False):
                return value(*args, **kwargs)

        return call

    @contextmanager
    def answering(self, what: str, reaches_server: bool = True) -> Iterator[None]:
        """Say so while ``what`` waits for the server; a call the client gave up on after waiting raises
        :class:`TrackingUnavailable` (one line) instead of the client's retry traceback."""
        start = time.monotonic()
        done = threading.Event()
        said = threading.Event()

        def watch() -> None:
            wait = _note_after()
            while not done.wait(wait):
                said.set()
                _say(
                    f"MLflow tracking server {self.server} has not answered for {time.monotonic() - start:.0f} s "
                    f"({what}); still trying, at most {bounds_text()}"
                )
                wait = NOTE_EVERY

        watcher = threading.Thread(target=watch, name="cae-tracking-watch", daemon=True)
        with suppress(RuntimeError):  # at interpreter shutdown (3.12+) no thread starts: call unwatched
            watcher.start()
        try:
            yield
        except Exception as err:
            waited, cause = time.monotonic() - start, _gave_up(err)
            if waited < _note_after() or cause is None:
                raise
            self.silent = True
            _GAVE_UP.set()
            raise TrackingUnavailable(
                f"MLflow tracking server {self.server} did not answer for {waited:.0f} s ({what}: {cause}); "
                "the study is intact: run the same command again once it answers"
            ) from None
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()  # a line it is printing now is followed by the one below, not after it
        if reaches_server:
            self.silent = False
            _GAVE_UP.clear()
        if said.is_set():
            _say(f"MLflow tracking server {self.server} answered after {time.monotonic() - start:.0f} s ({what})")


__all__ = ["HTTP_BOUNDS", "TrackingUnavailable", "Watched", "bound_http", "bounds_text", "gave_up"]
