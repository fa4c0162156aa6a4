"""The Python API (``import cae``), used the way the README's notebook example uses it."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_cae_lists_the_api_and_loads_no_tensorflow():
    script = "import sys, cae; print(dir(cae)); print(any(m.startswith(('tensorflow', 'keras')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    names, heavy = out.stdout.strip().splitlines()[-2:]
    for name in (
        "load_experiment",
        "load_splits",
        "train_and_evaluate",
        "run_study",
        "load_best_model",
        "baseline_scores",
    ):
        assert name in names
    assert heavy == "False"


def test_every_public_function_has_a_docstring():
    import cae

    for name in cae.__all__:
        assert (getattr(cae, name).__doc__ or "").strip(), name


@pytest.mark.slow  # a real (tiny) study end to end, then the README's own block
def test_the_readmes_python_block_runs_as_written_after_the_quick_start(tmp_path):
    """The block is taken from README.md and run as it is, in a runs/ folder where the quick start's
    study (cae-search, on the sample) already exists with other settings."""
    import os
    import re

    runs = tmp_path / "runs"
    env = {**os.environ, "CAE_RUNS_DIR": str(runs), "MLFLOW_TRACKING_URI": f"sqlite:///{runs}/mlflow.db"}
    code = (  # the quick start, shortened: `make search` on the sample, through the same API
        "import cae\n"
        f"cae.run_study(cae.load_search({str(REPO / 'experiments/search.yaml')!r}, {{'trials': 1, "
        "'experiment.data.source': 'sample', 'experiment.data.subset': 160, 'experiment.train.epochs': 1}))\n"
    )
    block = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    for script in (code, block):
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (runs / "notebook" / "best.json").exists() and (runs / "cae-search" / "best.json").exists()
