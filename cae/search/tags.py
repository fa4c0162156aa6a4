"""What a study's runs and trials are labelled with, for both engines (conventions: stage, engine, data)."""

from __future__ import annotations

from typing import Any

from cae.config import SearchConfig
from cae.hardware import machine

SKIPPED = "skipped: "  # fail reason prefix of a point dropped before training (no run, not counted)


def parent_tags(
    cfg: SearchConfig, data_source: str, engine: str, lineage: dict[str, Any] | None = None
) -> dict[str, str]:
    """The study's parent run: engine, stage, data source, machine, and a colorization's lineage."""
    tags = {"engine": engine, "stage": cfg.stage, "data_source": data_source, "machine": machine()}
    return {**tags, **{k: str(v) for k, v in (lineage or {}).items()}}
