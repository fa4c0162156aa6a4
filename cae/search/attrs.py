"""What the harness records on Optuna trials and studies (their user attributes): the names, and typed
readers, in one place.

A trial's attributes travel with it: Optuna's retry callback copies them to the retry of a failed
attempt, so a reader of a state-bound attribute (the reason a trial failed or stopped) checks the state.
"""

from __future__ import annotations

from typing import Any

# Trial attributes
FAIL_REASON = "fail_reason"  # why a FAIL trial failed ("skipped: ..." for a point dropped before training)
STOP_REASON = "stop_reason"  # why a PRUNED trial stopped (its rung, or the task's own stop)
RUN_ID = "mlflow_run_id"  # the trial's MLflow child run
ENQUEUED = "enqueued"  # a point handed to the study (a prior): its label
RECIPE = "recipe"  # a colorization study's early point: its label
CODE_VALUES = "code_values"  # the narrower of latent and bottleneck (the code size compared)
RUNG = "rung_"  # rung_<epoch>: a two-objective trial's value at a rung (cae/search/rungs.py)
# Study attributes
UID = "uid"  # tells a study from an older one of the same name
PARENT_RUN = "mlflow_parent_run_id"
OBJECTIVES = "objectives"
SPACE = "space"
LINEAGE = "lineage"  # a colorization study: the reconstruction trial it starts from
EXTENSIONS = "extensions"  # the settings a study was extended onto (cae/search/record.py)


def fail_reason(trial: Any) -> str:
    """Why ``trial`` failed ("" unless it is FAIL: a retry carries its failed attempt's reason)."""
    return str(trial.user_attrs.get(FAIL_REASON, "")) if trial.state.name == "FAIL" else ""


def stop_reason(trial: Any) -> str:
    """Why ``trial`` was stopped early ("" unless it is PRUNED)."""
    return str(trial.user_attrs.get(STOP_REASON, "")) if trial.state.name == "PRUNED" else ""


def run_id(trial: Any) -> str | None:
    value = trial.user_attrs.get(RUN_ID)
    return str(value) if value else None


def enqueued(trial: Any) -> str | None:
    """The label of a point handed to the study, None for a point the sampler chose."""
    value = trial.user_attrs.get(ENQUEUED)
    return str(value) if value is not None else None


def code_values(trial: Any) -> int | None:
    value = trial.user_attrs.get(CODE_VALUES)
    return int(value) if value is not None else None


def rung_values(attrs: dict[str, Any]) -> dict[int, float]:
    """A trial's rung values by epoch, from its ``rung_<epoch>`` attributes."""
    return {
        int(k.removeprefix(RUNG)): float(v)
        for k, v in attrs.items()
        if k.startswith(RUNG) and k.removeprefix(RUNG).isdigit()
    }
