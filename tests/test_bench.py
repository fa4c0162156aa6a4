"""`make bench` (cae/bench/speed.py, render.py): measurements stored once complete, resumed, and the report
drawn from them alone. The replay and the table have their own tests (test_replay.py, test_table.py)."""

from __future__ import annotations

import json

import pytest

from cae.bench.render import NOTES_MARKER, write_report
from cae.bench.speed import PLANS, Store
from cae.errors import CAEError


def speed_file(tmp_path, harness=(1000.0, 1100.0), bare=(1050.0, 1000.0)):
    measurements = {}
    for name, rates in (("harness", harness), ("bare fit", bare)):
        measurements[f"throughput/bs128/{name}"] = {
            "result": {"epoch_seconds": [12000 / r for r in rates], "images": 12000},
            "seconds": 1.0,
            "at": "2026-12-06 10:00",
            "host": "test host",
        }
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"plan": {}, "measurements": measurements}))
    return path


def test_the_report_states_the_speed_goal_from_the_measurements_alone(tmp_path):
    out = write_report(speed_file(tmp_path), tmp_path / "BENCHMARKS.md")
    text = out.read_text()
    assert "| 128 | 1,050 [1,000–1,100] |" in text and "Goal: the harness at least 0.95×" in text
    assert "**met**" in text and "Not recorded yet: `make bench PLAN=table`" in text
    slow = write_report(speed_file(tmp_path, harness=(500.0, 500.0)), tmp_path / "slow.md").read_text()
    assert "**missed** (lowest 0.488" in slow


def test_hand_written_notes_survive_a_rewrite(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"old\n{NOTES_MARKER}\nwhy the goal was missed\n")
    write_report(speed_file(tmp_path), out)
    assert out.read_text().rstrip().endswith(f"{NOTES_MARKER}\nwhy the goal was missed")


def test_a_measurement_is_stored_once_and_not_measured_again(tmp_path):
    path, calls = tmp_path / "speed.json", []
    store = Store(path, PLANS["quick"], "host")
    assert store.get("throughput/bs128/harness", lambda: calls.append(1) or {"x": 1}) == {"x": 1}
    again = Store(path, PLANS["quick"], "host")  # a new process after a kill
    assert again.get("throughput/bs128/harness", lambda: calls.append(2) or {"x": 2}) == {"x": 1}
    assert calls == [1]
    with pytest.raises(CAEError, match=r"speed\.json holds other or damaged measurements"):
        Store(path, PLANS["full"], "host")
    path.write_text("{not json")
    with pytest.raises(CAEError, match=r"speed\.json holds other or damaged measurements"):
        Store(path, PLANS["quick"], "host")
