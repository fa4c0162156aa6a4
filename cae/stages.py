"""The one map from a stage's name to the task its study's trials train (``SearchConfig.stage``).

The search engines (:mod:`cae.search`) know no stage: the commands, spawned workers and the Python
API look the study's task up here and hand it to them.
"""

from __future__ import annotations

from typing import Any

from cae.errors import CAEError
from cae.preflight import check_search
from cae.search.task import ReconstructionTask, TaskFactory
from cae.search_config import SearchConfig


def task_for(stage: str) -> TaskFactory:
    """The :data:`~cae.search.task.TaskFactory` of ``stage`` (``reconstruction`` or ``colorization``)."""
    if stage == "reconstruction":
        return ReconstructionTask
    if stage == "colorization":
        from cae.colorize.task import ColorizationTask  # lazy: a reconstruction search never loads colorization

        return ColorizationTask
    raise CAEError(f"unknown stage {stage!r}; allowed: reconstruction, colorization")


def run_study(cfg: SearchConfig, **options: Any) -> dict[str, Any]:
    """Run or resume the study ``cfg`` to its ``trials`` (what ``make search`` does); returns its summary.

    The checks of :mod:`cae.preflight` come first; ``options`` go to the engine (e.g. ``tracker``).
    """
    return run_checked(check_search(cfg), **options)


def run_checked(cfg: SearchConfig, **options: Any) -> dict[str, Any]:
    """:func:`run_study` for a config :func:`cae.preflight.check_search` has checked already."""
    if cfg.engine == "keras-tuner":
        from cae.search.tuner import run_tuner

        return run_tuner(cfg, task_for(cfg.stage), **options)
    from cae.search.run import run_search

    return run_search(cfg, task_for(cfg.stage), **options)
