"""The one map from a stage's name to the task its study's trials train (``SearchConfig.stage``).

The search engines (:mod:`cae.search`) know no stage: the commands, spawned workers and the Python
API look the study's task up here and hand it to them.
"""

from __future__ import annotations

from cae.errors import CAEError
from cae.search.task import ReconstructionTask, TaskFactory


def task_for(stage: str) -> TaskFactory:
    """The :data:`~cae.search.task.TaskFactory` of ``stage`` (``reconstruction`` or ``colorization``)."""
    if stage == "reconstruction":
        return ReconstructionTask
    if stage == "colorization":
        from cae.colorize.task import ColorizationTask  # lazy: a reconstruction search never loads colorization

        return ColorizationTask
    raise CAEError(f"unknown stage {stage!r}; allowed: reconstruction, colorization")
