"""The exceptions users see as one-line messages, and how a failure is named in one line."""

from __future__ import annotations

import errno
import os
import reprlib
import sqlite3
from collections.abc import Iterator
from typing import Any


class CAEError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback, so the
    message must name what was wrong (file, key, value) and what is expected instead.
    """


class Interrupted(KeyboardInterrupt):
    """A signal stopped a command, which says in its message what was kept and how to go on (one line)."""


class TrialStopped(Exception):
    """A trial stopped early for a reason of its own (e.g. its colours collapsed to one).

    Engines record it like a pruned trial (finished, not failed) with the reason.
    """


# Set by the CLI's signal handler (SIGTERM, SIGHUP), which also raises KeyboardInterrupt, to the
# signal's name. Python drops an exception raised while the garbage collector runs a weakref callback
# ("Exception ignored in ..."), so that KeyboardInterrupt can be lost and a stopped search runs on;
# training checks this flag every epoch.
_stop_requested: str | None = None


def request_stop(signal_name: str = "SIGTERM") -> None:
    global _stop_requested
    _stop_requested = signal_name


def clear_stop() -> None:
    global _stop_requested
    _stop_requested = None


def stop_requested() -> str | None:
    """The name of the signal that asked this process to stop, if one did."""
    return _stop_requested


NO_SPACE = "no space left on "


def causes(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the errors it was raised from or while handling, each once."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def disk_full(err: BaseException) -> str | None:
    """``"no space left on <folder>"`` if ``err`` (or a cause) is a full disk, else None: an ``ENOSPC``
    error, or SQLite's ``SQLITE_FULL`` (the Optuna storage's and MLflow store's database)."""
    for cause in causes(err):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            where = os.path.dirname(cause.filename) if isinstance(cause.filename, str) else None
            return NO_SPACE + (where or "the disk")
        orig = getattr(cause, "orig", None) or cause
        if (
            isinstance(orig, sqlite3.Error)
            and (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_FULL
        ):
            return NO_SPACE + "the disk"
    return None


def no_space(err: BaseException) -> str | None:
    """Like :func:`disk_full`, also when MLflow's store says so only in words: it re-raises its database's
    errors as an ``MlflowException`` holding the message and no type or code to tell them by."""
    found = disk_full(err)
    if found is None and any("No space left on device" in str(c) for c in causes(err)):
        found = NO_SPACE + "the disk"
    return found


def disk_full_message(full: str) -> str:
    """The one wording of a full disk's error, wherever it is noticed."""
    return f"{full}; free some space, then run the same command again (it resumes)"


def first_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an error's message (or its type's name), at most ``limit`` characters.

    Error messages of libraries run to tracebacks and SQL; one line is what a user is shown.
    """
    text = err if isinstance(err, str) else str(err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fallback = "" if isinstance(err, str) else type(err).__name__
    return (lines[0] if lines else fallback)[:limit]


def failure_reason(err: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 300 characters) for logs and tags."""
    if isinstance(err, KeyboardInterrupt):
        # The CLI's SIGTERM handler sets the stop flag before raising; Ctrl-C raises on its own. A
        # worker of WORKERS=N is stopped by its parent's SIGTERM, whichever way the parent was.
        return f"interrupted ({stop_requested() or 'Ctrl-C'})"
    full = no_space(err)
    if full:
        return full
    first = first_line(str(err), 300)
    return f"{type(err).__name__}: {first}"[:300] if first else type(err).__name__


QUOTE_LIMIT = 80  # characters of a bad value an error message quotes


class _Short(reprlib.Repr):
    """A repr that never builds more than a few levels and items of a value.

    A YAML alias bomb ("billion laughs") is a small file whose value expands to billions of items
    when printed: ``repr`` of it runs out of memory, so the value is never formatted whole.
    """

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 5
        self.maxstring = self.maxother = self.maxlong = limit

    def repr_str(self, x: str, level: int) -> str:
        return repr(x[: self.maxstring])  # a prefix, not reprlib's middle cut: the start is what users wrote

    def repr_int(self, x: int, level: int) -> str:
        # repr of an int over 4,300 digits raises ValueError (Python's int-to-str limit)
        return repr(x) if x.bit_length() < 1000 else f"<an integer of about {int(x.bit_length() * 0.30103)} digits>"


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters (then ``…``), without ever formatting all of it.

    Every error message that quotes a user's value uses this: a 50 MB string or an alias bomb in a
    config file must not become a 27 MB error line (or exhaust memory while it is being built).
    """
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    text = _Short(limit).repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
