"""cae-search: a hyperparameter-search harness for convolutional autoencoders on CIFAR-10.

The command line (``make ...``, or ``cae --help``) is the main way in; these are the functions a
notebook needs, imported on first use (``import cae`` itself loads no TensorFlow)::

    import cae

    config = cae.load_experiment("experiments/reference.yaml", {"train.epochs": 2})
    splits = cae.splits_for(config)                       # or cae.load_splits("sample", seed=42)
    result = cae.train_and_evaluate(config, splits)       # result.model, .history, .test
    print(result.test["test_psnr"], cae.baseline_scores(splits, result.code_values))

    study = cae.load_search("experiments/search.yaml", {"trials": 4, "experiment.train.epochs": 2})
    summary = cae.run_study(study)                        # what `make search` runs
    model, record = cae.load_best_model(summary["study"])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (one place each; see their docstrings).
_EXPORTS = {
    "load_experiment": "cae.config",  # an experiment YAML (or the defaults) with overrides, validated
    "load_search": "cae.search_config",  # a study YAML with overrides, validated
    "load_splits": "cae.data",  # the seeded 80/10/10 split of a CIFAR-10 source (labels kept)
    "splits_for": "cae.data",  # the split an experiment config trains on
    "train_and_evaluate": "cae.train",  # the one unit of work: train, restore the best epoch, score
    "run_study": "cae.stages",  # run or resume a study (Optuna or keras-tuner), as `make search`
    "load_best_model": "cae.search.best",  # (model, best.json record) of a study's best trial
    "baseline_scores": "cae.baselines",  # PCA's and the thumbnail's PSNR at a code size, on a split
    "pca_basis": "cae.baselines",  # the cached PCA of a split's training images
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cae' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
