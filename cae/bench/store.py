"""The raw measurements: ``results/bench/<mode>.json``, written after each one, validated when read.

A measurement is stored only once it is complete (atomic write), so a killed benchmark resumes at
the first missing key. Searches also count their attempts: a search killed half-way is not resumed
but run again under a new study name (its wall-time curve must not contain the gap or the retried
trial), and the attempt number says how often that happened.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cae.errors import CAEError
from cae.paths import project_root, write_text_atomic

VERSION = 2  # 1: the first benchmark (10 trials × 3 seeds, a different layout), now results/bench/full-v1.json
TRIAL_KEYS = {"start": float, "end": float, "state": str}
# Key pattern of each kind of measurement, and the fields its result must have (name: type).
KINDS: list[tuple[str, dict[str, Any]]] = [
    (r"throughput/bs\d+/[^/]+", {"epoch_seconds": list, "images": int}),
    (r"gpu/[a-z0-9_]+/bs\d+", {"epoch_seconds": list, "images": int, "device": str}),
    (r"(search/[^/]+|workers/w\d+)/seed\d+", {"study": str, "trials": list, "wall_seconds": float}),
    (
        r"fidelity/config\d+",
        {"params": dict, "short": float, "long": float, "short_seconds": float, "long_seconds": float},
    ),
]


def shown_path(path: Path) -> str:
    """``results/bench/full.json``: repository-relative where possible (committed text carries no machine paths)."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return path.name


def regenerate_hint(path: Path) -> str:
    quick = "quick" in path.name
    if quick:
        return "delete it and run `make bench QUICK=1` again"
    return (
        f"restore it with `git checkout -- {shown_path(path)}`, or delete it and run `make bench` again "
        "to measure everything anew (hours)"
    )


def _fail(path: Path, what: str) -> CAEError:
    return CAEError(f"{shown_path(path)}: {what}; {regenerate_hint(path)}")


def _is(value: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp) and not (tp is int and isinstance(value, bool))


def _check_result(path: Path, key: str, result: Any) -> None:
    fields = next((f for pattern, f in KINDS if re.fullmatch(pattern, key)), None)
    if fields is None:
        raise _fail(path, f"unknown measurement {key!r}")
    if not isinstance(result, dict):
        raise _fail(path, f"measurement {key!r} is not an object")
    for name, tp in fields.items():
        if not _is(result.get(name), tp):
            raise _fail(path, f"measurement {key!r} lacks {name!r} ({tp.__name__})")
    for i, trial in enumerate(result.get("trials", [])):
        if not isinstance(trial, dict) or not all(_is(trial.get(k), tp) for k, tp in TRIAL_KEYS.items()):
            raise _fail(path, f"measurement {key!r}: trial {i} lacks start/end/state")
        if trial.get("value") is not None and not _is(trial["value"], float):
            raise _fail(path, f"measurement {key!r}: trial {i} has a non-numeric value")
    if not all(_is(s, float) for s in result.get("epoch_seconds", [])) or result.get("epoch_seconds") == []:
        raise _fail(path, f"measurement {key!r}: epoch_seconds must be a non-empty list of numbers")


def validate(path: Path, data: Any) -> dict[str, Any]:
    """``data`` as read from ``path`` if it has the current layout; else a one-line CAEError."""
    if not isinstance(data, dict):
        raise _fail(path, "not a JSON object")
    if data.get("version") != VERSION:
        raise _fail(
            path, f"written by another version of the benchmark (version {data.get('version', 1)}, expected {VERSION})"
        )
    for name, tp in {"mode": str, "plan": dict, "meta": dict, "attempts": dict, "measurements": dict}.items():
        if not _is(data.get(name), tp):
            raise _fail(path, f"lacks {name!r} ({tp.__name__})")
    for key, entry in data["measurements"].items():
        if not isinstance(entry, dict) or not _is(entry.get("seconds"), float) or "result" not in entry:
            raise _fail(path, f"measurement {key!r} lacks its result or seconds")
        _check_result(path, key, entry["result"])
    return data


def read_raw(path: Path) -> dict[str, Any]:
    """The raw JSON at ``path``, validated (a truncated or hand-edited file is a one-line error)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CAEError(f"{shown_path(path)} does not exist; run `make bench` to measure it") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(path, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    return validate(path, data)


class Store:
    """The measurements so far; each new one is written to disk as soon as it is complete."""

    def __init__(self, path: Path, mode: str, plan: dict[str, Any]):
        self.path = path
        self.counted = False  # this process's segment is counted once it measures something
        if path.exists():
            self.data = read_raw(path)
            if self.data["plan"] != plan:
                raise _fail(path, "holds measurements of other settings than this plan's (cae/bench/plan.py)")
        else:
            self.data = {"version": VERSION, "mode": mode, "plan": plan, "meta": {}, "attempts": {}, "measurements": {}}

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")

    def result(self, key: str) -> Any:
        entry = self.data["measurements"].get(key)
        return None if entry is None else entry["result"]

    def new_attempt(self, key: str) -> int:
        """Count (and save) one more attempt at ``key``; returns its number, 1 for the first."""
        n = int(self.data["attempts"].get(key, 0)) + 1
        self.data["attempts"][key] = n
        self.save()
        return n

    def begin(self, key: str) -> None:
        """Say that ``key`` is being measured; the first one a process measures counts a segment."""
        print(f"[bench] measuring {key} ...", flush=True)
        if not self.counted:  # a segment: one run of the command that measured something
            self.counted = True
            self.data["meta"]["segments"] = int(self.data["meta"].get("segments", 0)) + 1

    def put(self, key: str, result: Any, seconds: float, host: str) -> None:
        """Store a complete measurement (checked first: a bug here must not leave an unreadable file)."""
        _check_result(self.path, key, result)
        self.data["measurements"][key] = {
            "result": result,
            "seconds": round(seconds, 2),
            "at": time.strftime("%Y-%m-%d %H:%M"),
            "host": host,
        }
        self.save()

    def get_or_measure(self, key: str, measure: Callable[[], Any], host: str) -> Any:
        if key not in self.data["measurements"]:
            self.begin(key)
            start = time.perf_counter()
            result = measure()
            self.put(key, result, time.perf_counter() - start, host)
        return self.result(key)
