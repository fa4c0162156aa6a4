"""Optuna as the harness sets it up (cae/search/study.py): its warnings through one handler, which
leaves out what the harness says in its own line. In-process, real Optuna, no TensorFlow."""

from __future__ import annotations

import io
import logging

import pytest

from cae.errors import CAEError
from cae.search.study import OptunaLines, optuna_module


@pytest.fixture
def optuna_lines():
    """Optuna, and what its handler prints while the test runs."""
    optuna = optuna_module()
    handler = next(h for h in logging.getLogger("optuna").handlers if isinstance(h, OptunaLines))
    out = io.StringIO()
    old = handler.setStream(out)
    yield optuna, out
    handler.setStream(old)


def fail_with(error: BaseException):
    def objective(trial):
        trial.suggest_float("x", 0, 1)
        raise error

    return objective


def test_a_failure_the_harness_reports_is_not_said_again_by_optuna(optuna_lines):
    """Ctrl-C and a one-line CAEError: the trial line says them; Optuna's two warnings are left out."""
    optuna, out = optuna_lines
    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt):
        study.optimize(fail_with(KeyboardInterrupt()), n_trials=1)
    study.optimize(fail_with(CAEError("refused point")), n_trials=1, catch=(CAEError,))
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert out.getvalue() == ""


def test_an_unexpected_failure_keeps_both_of_optunas_lines(optuna_lines):
    optuna, out = optuna_lines
    study = optuna.create_study()
    study.optimize(fail_with(ValueError("a bug")), n_trials=1, catch=(ValueError,))
    study.optimize(fail_with(KeyboardInterrupt()), n_trials=1, catch=(KeyboardInterrupt,))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[W ")]
    assert len(lines) == 2, out.getvalue()
    assert "Trial 0 failed with parameters" in lines[0] and "ValueError('a bug')" in lines[0]
    assert lines[1].endswith("Trial 0 failed with value None.")  # trial 1's (Ctrl-C) are both left out
