"""The Makefile passes what users type through whole, and no secret reaches a command line: a path with
spaces stays one argument, and STORAGE (which may hold a PostgreSQL password) travels in the environment,
never in make's echo or any process's arguments."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cretPW"


def echoed(*variables: str) -> list[list[str]]:
    """The commands `make -n` would run for ``variables``, each split as the shell splits it."""
    out = subprocess.run(["make", "-n", "-C", str(REPO), *variables], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.replace("\\\n", " ").splitlines()  # a recipe continued over lines is one command
    return [shlex.split(line) for line in lines if " -m cae " in line]


def test_a_path_with_spaces_and_quotes_stays_one_argument():
    data = "/tmp/my data/it's cifar.tar.gz"
    for verb in ("train", "search", "report", "colorize-best"):
        (argv,) = echoed(verb, f"DATA={data}", "CONFIG=experiments/my config.yaml")
        assert argv[argv.index("--data") + 1] == data, argv
    (argv,) = echoed("train", "CONFIG=experiments/my config.yaml")
    assert "experiments/my config.yaml" in argv


def test_storage_is_never_on_a_command_line_or_in_makes_echo():
    storage = f"postgresql://cae:{SECRET}@db.example/optuna"
    for verb in ("search", "worker", "dashboard", "best", "studies", "report", "colorize-search"):
        out = subprocess.run(
            ["make", "-n", "-C", str(REPO), verb, f"STORAGE={storage}", "STUDY=x"], capture_output=True, text=True
        )
        assert SECRET not in out.stdout + out.stderr, (verb, out.stdout)
    # make passes it on in the environment, where the command reads it.
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "--eval", "show-storage: ; @echo $$CAE_STORAGE", "show-storage",
         f"STORAGE={storage}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.strip() == storage, out.stderr


@pytest.mark.slow  # a search with two spawned workers on PostgreSQL
def test_no_process_of_a_postgresql_search_shows_the_password(postgres, tmp_path):
    """`ps` while a WORKERS=2 search runs: neither the coordinator nor a worker carries the password in
    its arguments, and no file with it is left in the temporary folder."""
    url = postgres.create_database("secret").replace("postgres@", f"postgres:{SECRET}@")  # trust auth ignores it
    env = {
        **os.environ,
        "CAE_RUNS_DIR": str(tmp_path / "runs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "CAE_STORAGE": url,
        "TMPDIR": str(tmp_path),
    }
    argv = [sys.executable, "-m", "cae", "search", "--study", "secret", "--trials", "2", "--workers", "2",
            "--data", "sample", "--subset", "160", "--epochs", "1", "--set", "enqueue=[]"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    while process.poll() is None:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):  # a process that ended meanwhile
                    seen.add((Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        time.sleep(0.2)
    output = process.communicate()[0]
    assert process.returncode == 0, output[-3000:]
    ours = [c for c in seen if " -m cae " in c]
    assert any("search-worker" in c for c in ours), ours  # the workers were seen
    assert not [c for c in seen if SECRET in c]
    assert SECRET not in output
    assert not [p for p in tmp_path.glob("cae-search-*") if SECRET in p.read_text(errors="ignore")]
