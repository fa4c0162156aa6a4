"""The tags every MLflow run of the harness carries (conventions: ``stage``, ``data_source``, ``machine``).

One place decides them, so a trial, a study's parent run, a report retrain, a colorization variant
and the semantic-check classifier are labelled alike.
"""

from __future__ import annotations

from typing import Any

from cae.hardware import machine


def stage_of(config: Any) -> str:
    """``reconstruction`` for a network that sees RGB, ``colorization`` for one that sees gray."""
    return "reconstruction" if config.data.input == "rgb" else "colorization"


def run_tags(stage: str, data_source: str) -> dict[str, str]:
    """The conventions' run tags: what the run trains, on which data, on which machine."""
    return {"stage": stage, "data_source": data_source, "machine": machine()}


# MLflow experiments beside a study's own (conventions: one experiment per study, a child run per
# trial): runs that are not trials go here, so the study's run list in the UI is its trials.
def report_experiment(study: str) -> str:
    """Where a report's retrained models (and a colorization study's retrained front) are tracked."""
    return f"{study}-report"


def colorize_best_experiment(study: str) -> str:
    """Where ``make colorize-best STUDY=<study>`` tracks its variants."""
    return f"{study}-colorize-best"
