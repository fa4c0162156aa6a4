"""The replay (cae/bench/replay.py): Optuna's ask/tell over a learning-curve table, on tiny tables
whose answers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from cae.bench.replay import (
    Strategy,
    Trial,
    median,
    paired_test,
    ratio_interval,
    replay,
    table_from_rows,
    target_of,
    time_to_target,
)
from cae.schema import with_overrides
from cae.search_config import SearchConfig
from cae.space import load_space

CHOICES = [8, 16, 24, 32, 40, 48, 56, 64, 72, 80]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Ten configurations of one categorical key (the lookup is exact): config i ends at MSE 1/(i+1)."""
    path: Path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(yaml.safe_dump({"params": {"train.batch_size": {"choices": CHOICES}}}))
    space = load_space(path)
    rows = [
        {"config": f"c{i}", "seed": 0, "epoch": e, "val_mse": 1.0 / (i + 1) / e, "seconds": 10.0,
         "train.batch_size": c}
        for i, c in enumerate(CHOICES)
        for e in (1, 2, 3)
    ]  # fmt: skip
    return table_from_rows(rows, space)


def test_random_search_finds_the_best_configuration_as_often_as_chance_says(table):
    # P(the best of N configurations among k uniform draws) = 1 - (1 - 1/N)^k.
    n, k, seeds = len(CHOICES), 5, 600
    hits = sum(
        any(t.config == "c9" for t in replay(Strategy("random", "none", False), s, table, SearchConfig(), k))
        for s in range(seeds)
    )
    expected = 1 - (1 - 1 / n) ** k
    spread = 3 * math.sqrt(expected * (1 - expected) / seeds)  # three binomial standard deviations
    assert abs(hits / seeds - expected) < spread, (hits / seeds, expected)


@pytest.mark.parametrize("strategy", [Strategy("tpe", "hyperband", True), Strategy("random", "median", False)])
def test_a_replay_is_the_same_for_the_same_seed_and_differs_for_another(table, strategy):
    prior = [{"train.batch_size": 40}]
    runs = [replay(strategy, seed, table, SearchConfig(), 12, prior) for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_the_clock_is_the_recorded_seconds_and_the_prior_is_off_it(table):
    run = replay(Strategy("random", "none", True), 0, table, SearchConfig(), 4, [{"train.batch_size": 80}])
    first, rest = run[0], run[1:]
    assert first.enqueued and first.config == "c9" and first.end == 0.0  # the prior runs first, off the clock
    assert [t.end for t in rest] == [30.0 * (i + 1) for i in range(len(rest))]  # 3 epochs of 10 s each
    # The prior's (best) value never counts as reaching a target.
    assert time_to_target(run, 0.1) == math.inf or time_to_target(run, 0.1) > 0


@pytest.mark.parametrize("pruner", ["successive_halving", "median", "hyperband"])
def test_a_pruner_stops_trials_in_the_replay(table, pruner):
    cfg = with_overrides(SearchConfig(), {"pruner.n_warmup_steps": 1, "pruner.n_startup_trials": 2})
    run = replay(Strategy("random", pruner, False), 0, table, cfg, 20)
    assert {t.state for t in run} >= {"COMPLETE", "PRUNED"}
    assert all(t.epochs < 3 for t in run if t.state == "PRUNED")


def test_the_target_and_the_statistics():
    runs = [[Trial(0, 10, "COMPLETE", v, 3, "c0", False), Trial(10, 20, "PRUNED", None, 1, "c1", False)]
            for v in (0.3, 0.1, 0.2, 0.4)]  # fmt: skip
    assert target_of(runs) == 0.3  # random's final best, the worse middle of an even count
    assert [time_to_target(r, 0.3) for r in runs] == [10, 10, 10, math.inf]
    assert median([1.0, math.inf, math.inf]) == math.inf and median([1.0, 2.0, math.inf]) == 2.0
    times = [1.0] * 30
    ratio, low, high = ratio_interval(times, [4.0] * 30)
    assert ratio == low == high == 0.25
    assert paired_test([1.0] * 20, [2.0] * 20) < 0.001
    assert paired_test([1.0, 2.0], [1.0, 2.0]) == 1.0
    rng = np.random.default_rng(0)
    assert paired_test(list(rng.random(40)), list(rng.random(40))) > 0.01


@pytest.mark.parametrize("planned, provisional", [(64, True), (10, False)])
def test_the_report_calls_a_choice_from_a_table_short_of_its_plan_provisional(table, tmp_path, planned, provisional):
    from cae.bench.replay_report import BASELINE, write_report

    strategies = [BASELINE, Strategy("random", "hyperband", False)]
    runs = {s.name: [replay(s, seed, table, SearchConfig(), 6) for seed in range(8)] for s in strategies}
    meta = {
        "plan": {"configs": planned},
        "pca_val_psnr": 0.0,
        "space": "space.yaml",
        "code_values": 8,
        "split": [40, 5, 5],
        "data_file": "tiny",
        "data_source": "path",
        "split_seed": 0,
    }
    text = write_report(tmp_path, runs, table, meta, SearchConfig(), {}).read_text()
    chosen = next(line for line in text.splitlines() if line.startswith("**Chosen"))
    assert ("provisional: the table holds 10 of its 64 planned configurations" in chosen) == provisional
    assert chosen.endswith(
        "The default study (`experiments/search.yaml`) runs `tpe+hyperband`, not this pick "
        "(`results/README.md` says why)."
    )
    missing = next(line for line in text.splitlines() if line.startswith("Not replayed: "))
    assert "`tpe+none`" in missing and "`random+hyperband`" not in missing  # what is missing is said
    assert (tmp_path / "replay_progress.png").stat().st_size > 0
    fates = json.loads((tmp_path / "epoch_fates.json").read_text())  # what a study's first estimate reads
    assert fates["table_epochs"] == 3 and fates["strategies"][BASELINE.name] == {"complete": 1.0}
    stops = fates["strategies"]["random+hyperband"]
    assert stops["complete"] < 1.0 and math.isclose(sum(stops.values()), 1.0, abs_tol=1e-3)


def test_the_first_estimate_scales_the_replays_rungs_to_the_studys_length(tmp_path):
    from cae.search.estimate import DEFAULT_SHARE, epoch_share

    path = tmp_path / "epoch_fates.json"
    path.write_text(json.dumps({"table_epochs": 12, "strategies": {"tpe+successive_halving+prior": {
        "3": 0.5, "9": 0.25, "complete": 0.25}}}))  # fmt: skip
    cfg = with_overrides(SearchConfig(), {"enqueue": [{}], "pruner.name": "successive_halving"})
    at = {e: epoch_share(with_overrides(cfg, {"experiment.train.epochs": e}), path) for e in (12, 20, 6)}
    assert at[12] == 0.5 * 3 / 12 + 0.25 * 9 / 12 + 0.25  # the replay's own length: its shares
    assert at[20] == 0.5 * 3 / 20 + 0.25 * 9 / 20 + 0.25  # a stopped trial stops at the same epoch
    assert at[6] == 0.5 * 3 / 6 + 0.25 + 0.25  # a rung beyond the trial's end: it ran to the end
    assert epoch_share(with_overrides(cfg, {"sampler.name": "random"}), path) == DEFAULT_SHARE  # not replayed
    assert epoch_share(with_overrides(cfg, {"pruner.name": "none"}), path) == 1.0


# ---- a live study beside its replay (cae/bench/live.py) ----------------------------------------------

LIVE_META = {
    "plan": {"configs": 10, "subset": 40, "epochs": 3},
    "space_digest": "abc",
    "code_values": 8,
    "data_digest": "def",
    "pca_val_psnr": 0.0,
    "space": "space.yaml",
    "split": [40, 5, 5],
    "data_file": "tiny",
    "data_source": "path",
    "split_seed": 0,
}


def live_study(url: str, name: str = "live", **settings: object) -> None:
    """A study on a real SQLite storage: the enqueued point (100 s), then the sampler's own trials."""
    import datetime

    import optuna

    study = optuna.create_study(study_name=name, storage=url)
    for key, value in {"space_digest": "abc", "code_values": 8, "data_digest": "def", "subset": 40, "epochs": 3,
                       "strategy": "random+none", **settings}.items():  # fmt: skip
        study.set_user_attr(key, value)
    t0 = datetime.datetime(2026, 1, 1)
    trials = [(100, "COMPLETE", 0.9, {"enqueued": "the prior"}), (50, "COMPLETE", 0.5, {}), (20, "PRUNED", None, {}),
              (30, "COMPLETE", 0.2, {})]  # fmt: skip
    for seconds, state, value, user_attrs in trials:
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0, trial_id=0, state=optuna.trial.TrialState[state], value=value, values=None,
                datetime_start=t0, datetime_complete=t0 + datetime.timedelta(seconds=seconds),
                params={"train.batch_size": 8},
                distributions={"train.batch_size": optuna.distributions.CategoricalDistribution(CHOICES)},
                user_attrs=user_attrs, system_attrs={}, intermediate_values={0: 1.0}
            )
        )  # fmt: skip
        t0 += datetime.timedelta(seconds=seconds)


def test_a_live_study_is_read_on_the_replays_clock_and_shown_beside_it(table, tmp_path):
    from cae.bench.live import first_finished, read_live, record_live
    from cae.bench.replay_report import BASELINE, write_report

    url = f"sqlite:///{tmp_path}/optuna.db"
    live_study(url)
    record_live("live", url, LIVE_META, tmp_path / "live.json")
    [(study, strategy, trials)] = read_live(tmp_path / "live.json")
    # The enqueued point's 100 s are off the clock; the sampler's trials follow one another.
    assert (study, strategy) == ("live", "random+none")
    assert [(t.start, t.end, t.state, t.enqueued) for t in trials] == [
        (0, 0, "COMPLETE", True), (0, 50, "COMPLETE", False), (50, 70, "PRUNED", False), (70, 100, "COMPLETE", False)
    ]  # fmt: skip
    assert first_finished(trials, 3) == trials[:3] and first_finished(trials, 9) == trials

    runs = {BASELINE.name: [replay(BASELINE, seed, table, SearchConfig(), 6) for seed in range(8)]}
    text = write_report(tmp_path, runs, table, LIVE_META, SearchConfig(), {}).read_text()
    section = text[text.index("## A live study beside its replay: `live`") :]
    assert "The best of the points it chose: **+6.990 dB over PCA**" in section  # MSE 0.2 against PCA at 0 dB
    assert "the enqueued point: +0.458 dB" in section
    assert "The replay of `random+none` (8 seeds), after the same 4 finished trials: best" in section
    assert (tmp_path / "replay_live_live.png").stat().st_size > 0


def test_each_live_study_keeps_its_own_strategy_and_section(table, tmp_path):
    from cae.bench.live import read_live, record_live
    from cae.bench.replay_report import BASELINE, write_report

    url = f"sqlite:///{tmp_path}/optuna.db"
    live_study(url)
    live_study(url, "pruned", strategy="random+hyperband+prior")
    for name in ("live", "pruned", "live"):  # recorded again: replaced in its place, not added
        record_live(name, url, LIVE_META, tmp_path / "live.json")
    assert [(s, st) for s, st, _ in read_live(tmp_path / "live.json")] == [
        ("live", "random+none"), ("pruned", "random+hyperband+prior")
    ]  # fmt: skip
    runs = {BASELINE.name: [replay(BASELINE, seed, table, SearchConfig(), 6) for seed in range(8)]}
    text = write_report(tmp_path, runs, table, LIVE_META, SearchConfig(), {}).read_text()
    assert "`pruned`: `make search` with the strategy `random+hyperband+prior`" in text
    assert "![live study beside its replay](replay_live_pruned.png)" in text
    assert (tmp_path / "replay_live_pruned.png").stat().st_size > 0


def test_a_live_study_of_other_settings_than_the_table_is_refused(tmp_path):
    from cae.bench.live import record_live
    from cae.errors import CAEError

    url = f"sqlite:///{tmp_path}/optuna.db"
    live_study(url, subset=4000)
    with pytest.raises(
        CAEError, match=r"study 'live' did not search what the table recorded: subset 4000 \(table 40\)$"
    ):
        record_live("live", url, LIVE_META, tmp_path / "live.json")
    with pytest.raises(CAEError, match=r"^no study 'other' in "):
        record_live("other", url, LIVE_META, tmp_path / "live.json")
    live_study(url, "unsaid", strategy="")
    with pytest.raises(CAEError, match=r"^study 'unsaid' does not record its strategy \(sampler\+pruner\)"):
        record_live("unsaid", url, LIVE_META, tmp_path / "live.json")
    assert not (tmp_path / "live.json").exists()
