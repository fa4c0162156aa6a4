"""The Python API (``import cae``), used the way the README's notebook example uses it."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_cae_lists_the_api_and_loads_no_tensorflow():
    script = "import sys, cae; print(dir(cae)); print(any(m.startswith(('tensorflow', 'keras')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    names, heavy = out.stdout.strip().splitlines()[-2:]
    for name in ("load_experiment", "load_splits", "train_and_evaluate", "run_study", "load_best_model", "baselines"):
        assert name in names
    assert heavy == "False"


def test_every_public_function_has_a_docstring():
    import cae

    for name in cae.__all__:
        assert (getattr(cae, name).__doc__ or "").strip(), name


@pytest.mark.slow  # a real (tiny) study end to end
def test_the_readme_example_runs_on_the_sample(tmp_path, tracking_uri):
    import cae

    config = cae.load_experiment(
        REPO / "experiments/reference.yaml", {"train.epochs": 1, "data.source": "sample", "data.subset": 320}
    )
    splits = cae.splits_for(config)
    result = cae.train_and_evaluate(config, splits)
    assert result.model.count_params() == 4911 and result.test["test_psnr"] > 10
    base = cae.baselines(splits, result.code_values)
    assert base["pca_psnr"] > base["pca_q8_psnr"] > 0 and math.isfinite(base["thumbnail_psnr"])

    study = cae.load_search(
        REPO / "experiments/search.yaml",
        {
            "trials": 1,
            "storage": f"sqlite:///{tmp_path}/optuna.db",
            "enqueue": [],
            "experiment.data.source": "sample",
            "experiment.data.subset": 320,
            "experiment.train.epochs": 1,
        },
    )
    summary = cae.run_study(study)
    assert summary["study"] == "cae-search-sample"  # a demo on the sample never lands in cae-search
    model, record = cae.load_best_model(summary["study"])
    assert record["trial_number"] == 0 and model.count_params() == record["n_params"]
