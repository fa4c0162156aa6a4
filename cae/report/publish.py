"""The one write-and-log step of every report: Markdown written atomically, it and its figures logged.

Each report module is ``measure(...) -> data`` and ``render(data) -> Markdown``; the command that
made the data calls :func:`publish` with the rendered text, the figures it drew beside it and the
MLflow runs the report belongs to (a study's parent run, a final model's run).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cae.paths import write_text_atomic
from cae.tracking import Run, Tracker

FOLDER = "report"  # the artifact folder of a report in its runs


def publish(
    path: Path, markdown: str, *, tracker: Tracker, runs: Iterable[str | None] = (), figures: Iterable[str] = ()
) -> Path:
    """Write ``path``; log it and the ``figures`` (file names next to it that exist) to each of ``runs``."""
    write_text_atomic(path, markdown)
    files = [path, *[path.parent / name for name in dict.fromkeys(figures) if (path.parent / name).exists()]]
    for run_id in dict.fromkeys(r for r in runs if r):
        run = Run(tracker, run_id)
        for f in files:
            run.log_artifact(f, FOLDER)
    return path
