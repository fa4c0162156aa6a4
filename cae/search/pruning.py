"""The study's pruner: Optuna's own, judged against the trials that did not fail.

A FAIL trial is an attempt that was killed, interrupted or lost its tracking server; its point is
queued again and the retry competes in its place. Optuna's pruners read every trial of the study,
failed ones included, so an attempt stopped at a good rung value would prune points that are
worse than it, its own retry among them. Here each pruner sees the study without its failed trials:
Optuna's median and successive-halving pruners through a view of the study, and Hyperband as
Optuna builds it (one successive-halving pruner per bracket, a trial's bracket drawn from its
number, weighted by the bracket's budget) over the same view.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Container
from typing import Any

import optuna
from optuna.pruners import BasePruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState


class _Judged:
    """A study as a pruner sees it: every attribute the study's, but its trials without the failed
    ones (and, for a Hyperband bracket, only the bracket's)."""

    def __init__(self, study: Any, keep: Any = None):
        self._study, self._keep = study, keep

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.state != TrialState.FAIL and (self._keep is None or self._keep(t))]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class WithoutFailed(BasePruner):
    """``inner`` (median or successive halving) judging a trial against the study's trials that did not fail."""

    def __init__(self, inner: BasePruner):
        self.inner = inner

    def prune(self, study: Any, trial: FrozenTrial) -> bool:
        return self.inner.prune(_Judged(study), trial)


class Hyperband(BasePruner):
    """Hyperband (Li et al. 2018) from ``min_resource`` to ``max_resource`` epochs, as Optuna's
    ``HyperbandPruner`` lays it out, each bracket a successive-halving pruner over the trials of its
    bracket that did not fail."""

    def __init__(self, min_resource: int, max_resource: int, reduction_factor: int = 3):
        n = (
            math.floor(math.log(max_resource / min_resource, reduction_factor)) + 1
            if max_resource > min_resource
            else 1
        )
        self.brackets = [
            SuccessiveHalvingPruner(
                min_resource=min_resource, reduction_factor=reduction_factor, min_early_stopping_rate=i
            )
            for i in range(n)
        ]
        # A bracket's share of the trials: its budget, as in Optuna (more trials where fewer epochs are spent).
        self.budgets = [math.ceil(n * reduction_factor**i / (i + 1)) for i in reversed(range(n))]

    def bracket(self, study_name: str, number: int) -> int:
        draw = zlib.crc32(f"{study_name}_{number}".encode()) % sum(self.budgets)
        for i, budget in enumerate(self.budgets):
            if draw < budget:
                return i
            draw -= budget
        return len(self.budgets) - 1

    def prune(self, study: Any, trial: FrozenTrial) -> bool:
        name = study.study_name
        mine = self.bracket(name, trial.number)
        view = _Judged(study, keep=lambda t: self.bracket(name, t.number) == mine)
        return self.brackets[mine].prune(view, trial)


def make_pruner(name: str, *, epochs: int, n_startup_trials: int, n_warmup_steps: int) -> BasePruner:
    """The pruner called ``name`` (none, median, successive_halving, hyperband) for trials of ``epochs`` epochs."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return Hyperband(min_resource=1, max_resource=epochs)
    if name == "successive_halving":
        return WithoutFailed(SuccessiveHalvingPruner(min_resource=max(1, n_warmup_steps)))
    return WithoutFailed(optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps))
