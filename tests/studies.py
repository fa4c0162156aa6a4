"""A tiny real study (Optuna on SQLite + MLflow), shared by the compare/report/ui tests."""

from __future__ import annotations

from pathlib import Path

from cae.search_config import SearchConfig, load_search

REPO = Path(__file__).resolve().parent.parent


def tiny_search(tmp: Path, study: str, trials: int = 4, **overrides) -> SearchConfig:
    from cae.search.run import run_search

    cfg = load_search(
        REPO / "experiments/search.yaml",
        {
            "study": study,
            "trials": trials,
            "storage": f"sqlite:///{tmp}/optuna.db",
            "experiment.data.source": "sample",
            "experiment.data.subset": 240,
            "experiment.train.epochs": 2,
            "enqueue": [],  # the default study's enqueued points are 832-value dense models: not for tiny tests
            **overrides,
        },
    )
    run_search(cfg)
    return cfg
