"""`make setup`'s checks and choices, and the GPU plumbing, without a GPU: fake `nvidia-smi` and interpreters.

`make setup` runs with ``VENV`` in a temporary folder and a fake ``PYTHON``, so nothing is installed:
the fake interpreter answers the version query and refuses to create the environment.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from cae.hardware import configure_gpus, gpu_ids, worker_gpu_env

REPO = Path(__file__).resolve().parent.parent
H100 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a1b)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2c3d)"


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder first on PATH, holding a `nvidia-smi` that fails (no driver) unless a test rewrites it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script(folder / "nvidia-smi", "exit 9")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    # CI exports TF_EXTRA, and a `make test` run passes its own variables down in MAKEFLAGS: either
    # would force the choice these tests watch `make setup` make by itself.
    for name in ("TF_EXTRA", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        monkeypatch.delenv(name, raising=False)
    return folder


def fake_python(tmp_path: Path, version: str) -> Path:
    major, minor, _ = version.split(".")
    answer = f'-c) echo "{major} {minor} {version}";; *) echo "fake python: $*" >&2; exit 3;;'
    return script(tmp_path / f"python{version}", f'case "$1" in {answer} esac')


def make_setup(tmp_path: Path, python: Path, *extra: str) -> subprocess.CompletedProcess:
    venv = tmp_path / "venv"
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "setup", f"PYTHON={python}", f"VENV={venv}", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_setup_refuses_an_old_or_missing_python_in_one_line(tmp_path, fake_bin):
    out = make_setup(tmp_path, fake_python(tmp_path, "3.10.14"))
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path}/python3.10.14 is Python 3.10.14; cae-search needs Python 3.11+ "
        "(make setup PYTHON=python3.11)"
    ]
    assert not (tmp_path / "venv").exists()  # nothing created
    out = make_setup(tmp_path, tmp_path / "no-such-python")
    assert out.returncode != 0 and "no-such-python not found; cae-search needs Python 3.11+" in out.stderr


@pytest.mark.slow
def test_setup_picks_the_gpu_extra_when_nvidia_smi_lists_a_gpu(tmp_path, fake_bin):
    script(fake_bin / "nvidia-smi", f'[ "$1" = "-L" ] && printf "{H100}\\n"')
    out = make_setup(tmp_path, fake_python(tmp_path, "3.12.1"))
    assert (
        "setup: Python 3.12.1, TensorFlow extra 'gpu' (nvidia-smi -L: GPU 0: NVIDIA H100 80GB HBM3 "
        "(UUID: GPU-0a1b)); force one with TF_EXTRA=gpu|tf-cpu|tf"
    ) in out.stdout
    assert "fake python: -m venv" in out.stderr  # it went on to create the environment


@pytest.mark.slow
def test_setup_without_a_gpu_and_forced_choices(tmp_path, fake_bin):
    python = fake_python(tmp_path, "3.11.7")
    chosen = "tf-cpu" if platform.system() == "Linux" and platform.machine() == "x86_64" else "tf"
    assert f"TensorFlow extra '{chosen}' (no NVIDIA GPU" in make_setup(tmp_path, python).stdout
    assert "TensorFlow extra 'gpu' (TF_EXTRA=gpu)" in make_setup(tmp_path, python, "TF_EXTRA=gpu").stdout
    out = make_setup(tmp_path, python, "TF_EXTRA=cuda")
    assert "error: TF_EXTRA=cuda is not one of gpu, tf-cpu, tf" in out.stderr and "fake python" not in out.stderr


@pytest.mark.slow
def test_workers_get_one_gpu_each(fake_bin, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_ids() == []  # nvidia-smi fails: no driver
    script(fake_bin / "nvidia-smi", f'[ "$1" = "-L" ] && printf "{H100}\\n"')
    gpus = gpu_ids()
    assert gpus == ["0", "1"]
    assert [worker_gpu_env(i, gpus) for i in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "0"},
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the user's choice wins
    assert gpu_ids() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_ids() == [] and worker_gpu_env(0, []) == {}


@pytest.mark.slow
def test_a_gpu_that_tensorflow_cannot_use_is_named(fake_bin, monkeypatch, capsys):
    """nvidia-smi lists a GPU that a CPU-only TensorFlow cannot use: say how to install the gpu extra."""
    import tensorflow as tf

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    script(fake_bin / "nvidia-smi", f'[ "$1" = "-L" ] && printf "{H100}\\n"')
    seen = configure_gpus()
    out = capsys.readouterr().out
    if tf.config.list_physical_devices("GPU"):  # a real GPU build on a real GPU: nothing to say
        assert seen > 0 and "does not see it" not in out
    else:
        assert seen == 0 and "TensorFlow does not see it" in out and "TF_EXTRA=gpu" in out


def test_every_process_grows_gpu_memory_on_demand():
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # set when cae.hardware is imported
