"""A newcomer's first hour in a fresh clone: `make search` on the bundled sample, then the verbs the README
names next, each with no STUDY=, and no verb writes a tracked file (`git status` stays clean)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a clone, a tiny study and every follow-up verb through make
def test_the_quick_start_holds_together_and_writes_no_tracked_file(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    venv = REPO / ".venv"  # the clone shares this checkout's environment (its set-up stamp is there)
    # The clone's set-up inputs as old as can be: fresh from the clone they are newer than the stamp, and make
    # would reinstall the shared environment, editable, from the clone (deleted after the test).
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(clone / name, (0, 0))
    env = {**os.environ, "CAE_OFFLINE": "1", "PYTHONPATH": str(clone)}
    env.pop("CAE_RUNS_DIR", None)  # the clone's own runs/, as a user's
    env.pop("MLFLOW_TRACKING_URI", None)

    def make(*args: str) -> str:
        out = subprocess.run(
            ["make", "--no-print-directory", "-C", str(clone), f"VENV={venv}", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert out.returncode == 0, f"make {' '.join(args)}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        return out.stdout + out.stderr

    make("search", "DATA=sample", "TRIALS=2", "EPOCHS=1", "SUBSET=160")
    make("compare")
    report = make("report")
    best = make("best")
    make("colorize-best", "VARIANT=chroma", "EPOCHS=1", "SUBSET=160")

    assert "runs/cae-search/report/search.md" in report
    assert best.startswith("study cae-search: best trial") and len(best.splitlines()) <= 8
    assert (clone / "runs" / "cae-search" / "report" / "colorization.md").exists()
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == "", status.stdout  # runs/ is the user's space; nothing tracked changed
