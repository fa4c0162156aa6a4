"""The one write-and-log step of every report (Markdown written atomically, it and its figures logged),
and the explicit step that publishes a study's reports as this project's results (`make publish`).

Each report module is ``measure(...) -> data`` and ``render(data) -> Markdown``; the command that
made the data calls :func:`publish` with the rendered text, the figures it drew beside it and the
MLflow runs the report belongs to (a study's parent run, a final model's run). Reports are written
to ``runs/<study>/report/``, the user's space; only :func:`publish_study` writes tracked files.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from cae.errors import CAEError
from cae.paths import atomic_path, ensure_dir, project_root, report_dir, study_dir, write_text_atomic
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


def publish_study(study: str) -> list[Path]:
    """Copy ``runs/<study>/report/`` and the exported best (``best.json``) to ``results/<study>/``, the
    published outcome of a real run; returns the files written (tracked: commit them)."""
    source = report_dir(study)
    files = sorted(p for p in source.glob("*") if p.is_file()) if source.is_dir() else []
    if not files:
        raise CAEError(f"nothing to publish for study {study!r}: run `make report STUDY={study}` first ({source})")
    best = study_dir(study) / "best.json"
    target = ensure_dir(project_root() / "results" / study)
    written = []
    for f in [*files, *([best] if best.exists() else [])]:
        with atomic_path(target / f.name) as tmp:
            shutil.copyfile(f, tmp)
        written.append(target / f.name)
    return written
