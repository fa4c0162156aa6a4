"""The data a run trained on, as MLflow dataset inputs (the runs table's "Dataset" column).

Built from what :class:`cae.data.Splits` already knows (digest, sizes, source), without handing the
arrays to MLflow: ``mlflow.data.from_numpy`` would hash and profile 48,000 images again per run.
Names and contexts follow the project conventions; the source is the data file's name or
``keras`` / ``sample``, never a path of the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (dataset name, MLflow context, Splits attribute) per split.
SPLITS = (
    ("cifar10-train", "training", "x_train"),
    ("cifar10-val", "validation", "x_val"),
    ("cifar10-test", "testing", "x_test"),
)


def dataset_source(splits: Any) -> str:
    """``keras``, ``sample`` or the data file's name (no directory: runs are compared across machines)."""
    return splits.data_source if splits.data_source in ("keras", "sample") else Path(splits.location).name


def dataset_inputs(splits: Any) -> list[Any]:
    """The three ``DatasetInput`` of ``splits`` (a :class:`cae.data.Splits`, duck-typed)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = json.dumps({"uri": dataset_source(splits)})  # the UI shows JSON.parse(source).uri
    out = []
    for name, context, attr in SPLITS:
        images = getattr(splits, attr)
        profile = json.dumps({"num_rows": len(images), "shape": list(images.shape[1:]), "seed": splits.seed})
        dataset = Dataset(name=name, digest=splits.digest, source_type="local", source=source, profile=profile)
        out.append(DatasetInput(dataset=dataset, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]))
    return out
