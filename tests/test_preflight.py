"""cae.preflight: bad inputs answer before TensorFlow is imported; the data source is pinned once."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from cae.errors import CAEError
from cae.preflight import check_search, pinned_source
from cae.search_config import load_search

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "optuna", "mlflow")


def run_cli(*argv: str, tmp_path: Path) -> tuple[int, str, list[str]]:
    """`cae <argv>` in a fresh process: exit status, stderr, and the heavy packages it imported."""
    script = (
        "import sys; from cae.cli import main; rc = main(sys.argv[1:]); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))); sys.exit(rc)"
    )
    env = {"CAE_RUNS_DIR": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin", "CAE_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    return out.returncode, out.stderr, ast.literal_eval(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--data", "/nonexistent/cifar"], "error: data path /nonexistent/cifar does not exist"),
        (["train", "--data", "/nonexistent/cifar"], "error: data path /nonexistent/cifar does not exist"),
        (["search", "--storage", "notaurl", "--data", "sample"], "error: invalid storage URL 'notaurl'"),
        (["search", "--set", "space=/nonexistent.yaml"], "error: config file /nonexistent.yaml does not exist"),
        (["search", "--set", "train.epoch=1"], "did you mean experiment.train.epochs?"),
        (["search", "--data", "README.md"], "error: README.md: not a CIFAR-10 source"),
        (
            ["colorize", "--config", "experiments/conv-best.yaml", "--variant", "foo"],
            "unknown colorization variant 'foo'",
        ),
    ],
)
def test_bad_inputs_answer_without_importing_tensorflow(argv, message, tmp_path):
    rc, stderr, imported = run_cli(*argv, tmp_path=tmp_path)
    assert rc == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert imported == []  # nothing heavy: the answer takes about a second, not TensorFlow's 15-20 s


def test_a_study_on_the_bundled_sample_keeps_its_name_so_the_next_verbs_find_it():
    cfg = check_search(load_search(REPO / "experiments/search.yaml", {"experiment.data.source": "sample"}))
    assert cfg.study == "cae-search" and cfg.experiment.data.source == "sample"


def test_the_data_source_is_pinned_once(monkeypatch, tmp_path):
    monkeypatch.setenv("CAE_DATA", str(tmp_path))
    assert pinned_source(None) == str(tmp_path)  # CAE_DATA, as given
    assert pinned_source("sample") == "sample"
    with pytest.raises(CAEError, match="does not exist"):
        pinned_source(str(tmp_path / "missing"))


def test_a_read_only_runs_folder_is_one_line_before_anything_trains(tmp_path):
    from .conftest import require

    runs = tmp_path / "runs"
    runs.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(runs)], capture_output=True, text=True
    )
    require(out.returncode == 0, f"cannot mount a read-only tmpfs (needs root): {out.stderr.strip()}")
    try:
        code, err, heavy = run_cli("train", "--data", "sample", "--epochs", "1", tmp_path=tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    expected = (
        f"error: cannot write in {runs}: Read-only file system; give it write permission or set "
        "CAE_RUNS_DIR to a writable folder"
    )
    assert code == 2 and errors == [expected], err
    assert heavy == []  # said before TensorFlow is imported
