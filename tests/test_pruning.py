"""The study's pruners (cae/search/pruning.py): Optuna's, judged against the trials that did not fail."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from cae.search.pruning import Hyperband, make_pruner

optuna.logging.set_verbosity(optuna.logging.ERROR)


def attempt(study: optuna.Study, values: list[float], state: TrialState | None = None) -> optuna.Trial:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    pruned = False
    for step, value in enumerate(values):
        trial.report(value, step)
        pruned = trial.should_prune()
        if pruned:
            break
    if state == TrialState.COMPLETE:
        study.tell(trial, min(values))
    elif state is not None:
        study.tell(trial, state=state)
    return trial, pruned


@pytest.mark.parametrize("name", ["successive_halving", "hyperband", "median"])
def test_a_failed_trials_rung_values_prune_nobody(name):
    def study_with(first_state):
        study = optuna.create_study(study_name="s", pruner=make_pruner(name, epochs=9, n_startup_trials=1,
                                                                        n_warmup_steps=1))  # fmt: skip
        # An attempt that reached very good values and was then killed (FAIL), and one that completed.
        for _ in range(2):
            attempt(study, [0.01] * 9, first_state)
        return study

    # With the good attempts COMPLETE, a much worse trial is pruned at a rung; with them FAIL, nothing
    # judges it but itself: it goes on.
    _, pruned_by_finished = attempt(study_with(TrialState.COMPLETE), [1.0] * 9)
    _, pruned_by_failed = attempt(study_with(TrialState.FAIL), [1.0] * 9)
    assert pruned_by_finished and not pruned_by_failed


def test_hyperband_lays_out_brackets_as_optuna_does():
    pruner = Hyperband(min_resource=1, max_resource=30)
    assert len(pruner.brackets) == 4  # 1, 3, 9, 27 epochs
    assert pruner.budgets == [27, 12, 6, 4]  # more trials in the brackets that stop early
    counts = [0] * 4
    for number in range(2000):
        counts[pruner.bracket("study", number)] += 1
    assert counts == sorted(counts, reverse=True)
    assert pruner.bracket("study", 5) == pruner.bracket("study", 5)
