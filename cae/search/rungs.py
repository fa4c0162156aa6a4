"""Multi-fidelity pruning for the studies Optuna cannot prune: those with several objectives.

Optuna's pruners need ``trial.report``, which it refuses for multi-objective trials, so a
two-objective study (``make pareto``) would train every trial to the end. :class:`RungPruning` is
asynchronous successive halving (Li et al., ASHA) on one comparable number the study's task gives
(``Task.rung_value``: for reconstruction, the validation margin over PCA at the trial's own code
size): at each rung epoch (min · ηⁱ) a trial goes on only if its value is among the best 1/η of the
values the study's trials *of a similar code size* (the same half-octave bin) reached at that rung,
so no size crowds out the others. Failed attempts compete with nobody: their retry competes in
their place. Rung values are trial user attrs (``rung_<epoch>``), shared through the storage.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from cae.search import attrs
from cae.search.task import Task


def rung_epochs(min_resource: int, max_resource: int, reduction: int = 3) -> list[int]:
    """The epochs a trial is judged at: min_resource · reductionⁱ below the last epoch."""
    rungs, epoch = [], max(1, min_resource)
    while epoch < max_resource:
        rungs.append(epoch)
        epoch *= reduction
    return rungs


def size_bin(code_values: int) -> int:
    """A code size's half-octave bin: sizes within about 41 % of each other compete at a rung."""
    return math.floor(2 * math.log2(max(1, code_values)))


def promotable(value: float, others: list[float], reduction: int = 3) -> bool:
    """Whether ``value`` is among the best 1/``reduction`` of ``others`` + itself (at least the best one)."""
    ranked = sorted([*others, value], reverse=True)
    keep = max(1, len(ranked) // reduction)
    return value >= ranked[keep - 1]


class RungPruning(keras.callbacks.Callback):
    """Stops a trial (Optuna ``TrialPruned``) that falls out of the best third of its size bin at a rung."""

    def __init__(self, trial: Any, task: Task, code_values: int, rungs: list[int], reduction: int = 3):
        super().__init__()
        self.trial, self.task, self.code_values = trial, task, code_values
        self.rungs, self.reduction = set(rungs), reduction

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        import optuna

        done = epoch + 1
        if done not in self.rungs or not logs or "val_loss" not in logs:
            return
        value = float(self.task.rung_value(self.model, float(logs["val_loss"]), self.code_values))
        key = f"{attrs.RUNG}{done}"
        self.trial.set_user_attr(key, value)
        mine = size_bin(self.code_values)
        others = [
            float(t.user_attrs[key])
            for t in self.trial.study.get_trials(deepcopy=False)
            if t.number != self.trial.number
            and t.state.name != "FAIL"
            and key in t.user_attrs
            and size_bin(attrs.code_values(t) or 0) == mine
        ]
        if not promotable(value, others, self.reduction):
            raise optuna.TrialPruned(
                f"rung {done}: {value:+.3g} is not among the best 1/{self.reduction} of "
                f"{len(others) + 1} trials of its size there"
            )
