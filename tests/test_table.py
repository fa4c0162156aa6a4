"""The learning-curve table (cae/bench/table.py): drawn from the default space, one row per epoch,
resumed after a kill with nothing trained twice or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cae.bench.table import TablePlan, planned, read_rows
from cae.search_config import load_search
from cae.space import load_space

REPO = Path(__file__).resolve().parent.parent
PLAN = "TablePlan(configs=3, repeats=1, epochs=3, subset=160)"


def test_the_plan_draws_the_default_space_at_its_code_size_after_the_enqueued_points():
    cfg = load_search(REPO / "experiments/search.yaml")
    space = load_space(cfg.space, cfg.experiment)
    entries = planned(cfg, space, TablePlan(configs=20, repeats=4))
    assert [e.config for e in entries[: len(cfg.enqueue)]] == [f"e{i}" for i in range(len(cfg.enqueue))]
    drawn = [e for e in entries if e.config.startswith("c")]
    assert len({e.config for e in drawn}) == 20 and len(drawn) == 24  # 4 drawn twice, with the next seed
    assert Counter(e.seed for e in drawn) == {cfg.experiment.seed: 20, cfg.experiment.seed + 1: 4}
    assert all(space.holds(e.params) for e in entries)
    assert "model.code_budget" not in space.names and cfg.experiment.model.code_budget == cfg.code_values
    assert planned(cfg, space, TablePlan(configs=20, repeats=4)) == entries  # the same draws every time


def record(folder: Path, runs: Path) -> subprocess.Popen:
    code = (
        "from pathlib import Path; from cae.bench.table import TablePlan, record_table; "
        f"record_table('sample', {PLAN}, folder=Path({str(folder)!r}))"
    )
    env = {**os.environ, "CAE_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


@pytest.mark.slow
def test_the_table_resumes_after_a_kill(tmp_path):
    folder, runs = tmp_path / "bench", tmp_path / "runs"
    first = record(folder, runs)
    # Kill it once the second configuration is one epoch in (the first one's rows are written).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        done = list(runs.glob("bench/table/*/c000-s42/seconds.json"))
        if done and json.loads(done[0].read_text()).get("1"):
            break
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[0][-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = read_rows(folder / "curves.csv")
    assert {(r["config"], r["seed"]) for r in before} == {("e0", 42)}

    second = record(folder, runs)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    rows = read_rows(folder / "curves.csv")
    per_run = Counter((r["config"], r["seed"]) for r in rows)
    assert per_run == {("e0", 42): 3, ("c000", 42): 3, ("c001", 42): 3, ("c000", 43): 3, ("c002", 42): 3}
    assert all(r["seconds"] > 0 and r["val_mse"] > 0 for r in rows)
    assert "4 to train" in output  # e0 was not trained again
    meta = json.loads((folder / "curves.json").read_text())
    assert meta["code_values"] == 256 and meta["split"] == [160, 20, 20] and meta["data_source"] == "sample"
