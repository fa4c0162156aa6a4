"""The benchmark's report and raw-data handling, from recorded numbers only (nothing is trained or timed)."""

import json
import math

import pytest

from cae.bench import analysis as an
from cae.bench.fidelity import draw_points
from cae.bench.plan import QUICK, STRATEGIES
from cae.bench.render import NOTES_MARKER, write_report
from cae.bench.store import VERSION, Store, read_raw
from cae.errors import CAEError
from cae.space import load_space


def trials(*points):
    """(end, value) per COMPLETE trial; value None = PRUNED. Trials run back to back from 0."""
    out, start = [], 0.0
    for end, value in points:
        out.append(
            {
                "start": start,
                "end": float(end),
                "state": "COMPLETE" if value is not None else "PRUNED",
                "value": value,
                "epochs": 2,
                "train_seconds": (end - start) * 0.9 if value else None,
            }
        )
        start = float(end)
    return out


def search(*points):
    return {"study": "s", "trials": trials(*points), "wall_seconds": 1.0}


# random's finals 0.006 / 0.005 / 0.004 -> target 0.005, reached at never / 500 / 700 s -> median 700 s
MEASUREMENTS = {
    "search/random/seed0": search((100, 0.010), (300, 0.008), (600, 0.006)),
    "search/random/seed1": search((100, 0.009), (500, 0.005), (600, 0.02)),
    "search/random/seed2": search((200, 0.007), (700, 0.004)),
    # TPE + median reaches it at 100 / 140 / 70 s: 14 % (10–20 %) of random's 700 s
    "search/tpe+median/seed0": search((100, 0.005), (200, None), (300, 0.01)),
    "search/tpe+median/seed1": search((140, 0.004), (300, 0.02)),
    "search/tpe+median/seed2": search((70, 0.003), (300, 0.02)),
    "search/kt-hyperband/seed0": search((1400, 0.005)),
    # the same study with 2 workers: 3 trials in 150 s = 72/h vs 3 in 300 s = 36/h, target at 50 s vs 100 s
    "workers/w2/seed0": search((50, 0.005), (100, None), (150, 0.02)) | {"threads": 1},
    # harness 500 img/s vs bare fit 625 img/s (medians) -> 0.80
    "throughput/bs32/harness": {"epoch_seconds": [2.0, 2.0, 3.0], "images": 1000},
    "throughput/bs32/bare fit": {"epoch_seconds": [1.6, 1.6, 1.0], "images": 1000},
    # short ranks 1 2 3 4, long ranks 1 3 2 4: Spearman 1 - 6·2 / (4·15) = 0.8
    **{
        f"fidelity/config{i}": {
            "params": {"model.depth": 2},
            "short": s,
            "long": lg,
            "short_seconds": 1.0,
            "long_seconds": 4.0,
        }
        for i, (s, lg) in enumerate([(1, 1), (2, 3), (3, 2), (4, 4)])
    },
}


def raw(measurements=MEASUREMENTS, **meta):
    return {
        "version": VERSION,
        "mode": "quick",
        "plan": QUICK.as_dict(),
        "meta": {
            "command": "make bench QUICK=1",
            "cores": 2,
            "default_pruner": "median",
            "split": [200, 25, 25],
            "space": "search_spaces/reconstruction.yaml",
            "data": "sample",
            **meta,
        },
        "attempts": {},
        "measurements": {
            k: {"result": v, "seconds": 10.0, "at": "2026-11-30 10:00", "host": "test CPU"}
            for k, v in measurements.items()
        },
    }


def write_raw(tmp_path, data=None, name="quick.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data or raw()))
    return path


def test_report_states_ratios_verdicts_and_recommendation(tmp_path):
    out = write_report(write_raw(tmp_path), tmp_path / "B.md")
    text = out.read_text()
    assert "Target: validation MSE 0.005000" in text and "after 11.7 min" in text  # random's median 700 s
    assert "| TPE + median | 14% [10%–20%] | 3/3 | 0.00400 |" in text  # best at 25 % of 600 s = 150 s
    assert "| keras-tuner Hyperband | 200% [200%–200%] | 1/1 |" in text
    assert "Fewer than 3 finished trials per run: TPE + median, keras-tuner Hyperband" in text  # 3/2/2 and 1
    assert "reaches random search's final best in ≤ 25% of random's time — met**: it needed 14%" in text
    assert "| random, no pruning | 100% [71%–never] | 2/3 |" in text
    assert "Recommendation for a 2-core machine like this one: `WORKERS=2` (1 thread each)" in text
    assert "2.00× the trials per hour" in text and "| 1 worker | 36 [36–36] |" in text
    assert "| 0.80 | 96.0 |" in text and "every batch size — missed (lowest 0.80)" in text
    assert "Spearman ρ = 0.80" in text and "agree strongly" in text
    assert "Not measured: TensorFlow saw no GPU" in text
    assert "![best so far against wall time](search_progress-quick.png)" in text
    assert (tmp_path / "search_progress-quick.png").stat().st_size > 10_000
    assert str(tmp_path) not in text  # committed text carries no machine paths


def test_missed_goal_and_one_worker_recommendation(tmp_path):
    slow = {
        **MEASUREMENTS,
        "search/tpe+median/seed0": search((600, 0.005)),  # 1 trial in 600 s = 6/h, target at 600 s
        "search/tpe+median/seed1": search((650, 0.004)),
        "workers/w2/seed0": search((2000, 0.02), (4000, 0.01)) | {"threads": 1},  # 2 in 4000 s = 1.8/h, never
    }
    text = write_report(write_raw(tmp_path, raw(slow)), tmp_path / "B.md").read_text()
    assert "— missed**: it needed 86%" in text  # 600 / 700 s
    assert (
        "Recommendation for a 2-core machine like this one: one worker (the default); two workers finished only "
        "0.30× the trials per hour (time to target never vs 10.0 min)." in text
    )


def test_workers_compare_with_the_strategy_the_two_worker_runs_ran(tmp_path):
    # The default pruner changed to Hyperband after the 2-worker runs of TPE + median: the 1-worker arm stays
    # TPE + median (72 vs 36 trials per hour), not the new default's runs.
    data = raw(
        {
            **MEASUREMENTS,
            "workers/w2/seed0": MEASUREMENTS["workers/w2/seed0"] | {"strategy": "tpe+median"},
            "search/tpe+hyperband/seed0": search((900, 0.005)),
        },
        default_pruner="hyperband",
    )
    text = write_report(write_raw(tmp_path, data), tmp_path / "B.md").read_text()
    assert "## 3. Workers on one machine (TPE + median, sampler seeds [0])" in text
    assert "two workers finished 2.00× the trials per hour" in text


def test_a_partial_run_says_what_is_not_measured_yet(tmp_path):
    # QUICK plans 6 strategies x seed 0; MEASUREMENTS has seed 0 of random, tpe+median, kt-hyperband
    assert QUICK.seeds == (0,) and len(STRATEGIES) == 6
    text = write_report(write_raw(tmp_path), tmp_path / "B.md").read_text()
    assert "**Partial**: 3 of 6 search runs not measured yet; `make bench QUICK=1` resumes" in text
    complete = {**MEASUREMENTS, **{f"search/{name}/seed0": search((100, 0.005)) for name in STRATEGIES}}
    assert "Partial" not in write_report(write_raw(tmp_path, raw(complete)), tmp_path / "C.md").read_text()


def test_hand_written_notes_survive_a_rewrite(tmp_path):
    out, path = tmp_path / "B.md", write_raw(tmp_path)
    write_report(path, out)
    out.write_text(out.read_text() + f"\n{NOTES_MARKER}\n\n## Why the goal was missed\n\nMeasured reason.\n")
    write_report(write_raw(tmp_path, raw({"throughput/bs32/harness": MEASUREMENTS["throughput/bs32/harness"]})), out)
    text = out.read_text()
    assert text.count(NOTES_MARKER) == 1 and text.endswith("Measured reason.\n")
    assert "## 1. Search efficiency" in text and "Spearman" not in text  # regenerated, not appended


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"version": 2, "mode": "qu', "not valid JSON"),
        (json.dumps({"throughput/bs32": {"harness": [1.0]}}), "written by another version of the benchmark"),
        (
            json.dumps(raw({"search/random/seed0": {"study": "s", "trials": [{"start": 0}], "wall_seconds": 1.0}})),
            "trial 0 lacks start/end/state",
        ),
        (json.dumps(raw({"throughput/bs32/harness": {"epoch_seconds": [], "images": 10}})), "epoch_seconds"),
        (json.dumps(raw({"search/random": {}})), "unknown measurement 'search/random'"),
    ],
)
def test_damaged_raw_json_is_a_one_line_error_naming_the_file_and_the_fix(tmp_path, content, what):
    for name, fix in [("quick.json", "run `make bench QUICK=1` again"), ("full.json", "git checkout -- ")]:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(CAEError) as err:
            write_report(path, tmp_path / "B.md")
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{name}: ") and what in message and fix in message
    assert not (tmp_path / "B.md").exists()


def test_store_resumes_without_measuring_again_and_counts_attempts(tmp_path):
    path = tmp_path / "quick.json"
    store = Store(path, "quick", QUICK.as_dict())
    assert store.new_attempt("search/random/seed0") == 1
    store.get_or_measure("throughput/bs32/harness", lambda: {"epoch_seconds": [1.0], "images": 8}, "cpu")
    again = Store(path, "quick", QUICK.as_dict())  # a new process after a kill
    assert again.new_attempt("search/random/seed0") == 2
    assert again.get_or_measure("throughput/bs32/harness", lambda: pytest.fail("measured twice"), "cpu")["images"] == 8
    assert read_raw(path)["attempts"] == {"search/random/seed0": 2}
    assert read_raw(path)["meta"]["segments"] == 1  # the second process measured nothing new
    with pytest.raises(CAEError, match="other settings than this plan"):
        Store(path, "quick", {**QUICK.as_dict(), "trials": 99})


def test_time_to_target_and_best_so_far_count_complete_trials_only():
    run = trials((10, 0.5), (20, None), (30, 0.1))
    assert an.time_to_target(run, 0.2) == 30.0 and an.time_to_target(run, 0.05) == math.inf
    assert an.best_so_far(run, 25) == 0.5 and an.best_so_far(run) == 0.1
    assert an.target_of([trials((1, 0.3)), trials((1, 0.1))]) == 0.3  # even count: the worse middle value
    assert an.trials_per_hour(run) == 360.0


def test_fastest_pruner_treats_ratios_that_print_alike_as_a_tie():
    def row(ratios, best_at_end, final):
        return an.StrategyRow(
            ratios, sum(map(math.isfinite, ratios)), len(ratios), [0.02, 0.01, best_at_end], final, 400.0, 0.3, 30
        )

    # The full run's case: successive halving 97.5 % vs median 97.9 % (0.7 s apart on one seed) print as
    # 98 % both; the median pruner's lower best at random's time decides.
    rows = {
        "tpe+median": row([0.13, 0.9789, math.inf], 0.0076, 0.0076),
        "tpe+sha": row([0.12, 0.9753, math.inf], 0.0084, 0.0080),
        "tpe+hyperband": row([0.14, 1.07, math.inf], 0.0070, 0.0070),
    }
    eff = an.Efficiency(0.0116, 194.0, 440.0, rows)
    assert an.fastest(eff, ["tpe+median", "tpe+sha", "tpe+hyperband"]) == "tpe+median"
    # A difference the table shows still wins, whatever the best values.
    faster = {**eff.rows, "tpe+sha": row([0.12, 0.96, math.inf], 0.0084, 0.0080)}
    assert an.fastest(an.Efficiency(0.0116, 194.0, 440.0, faster), list(faster)) == "tpe+sha"
    # Equal printed ratios: more seeds reached first.
    reached = {**eff.rows, "tpe+sha": row([0.12, 0.9753, 3.0], 0.0084, 0.0080)}
    assert an.fastest(an.Efficiency(0.0116, 194.0, 440.0, reached), list(reached)) == "tpe+sha"


def test_report_names_the_pruner_tied_with_the_fastest_and_what_decided(tmp_path):
    # successive halving reaches the target exactly when TPE + median does, but ends worse (0.005 vs 0.004)
    sha = {f"search/tpe+sha/seed{i}": search((end, 0.005)) for i, end in enumerate((100, 140, 70))}
    text = write_report(write_raw(tmp_path, raw({**MEASUREMENTS, **sha})), tmp_path / "B.md").read_text()
    assert (
        "Fastest pruner with TPE: TPE + median (14% of random's time, 3/3 seeds reached; tied there with "
        "TPE + successive halving, the best at random's time decides (0.00400 vs 0.00500;"
    ) in text


def test_spearman_and_ranks_with_ties():
    assert an.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert an.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert an.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(an.spearman([1, 2], [1, 2]))


def test_fidelity_points_are_seeded_points_of_the_default_space():
    space = load_space("search_spaces/reconstruction.yaml")
    points = draw_points(space, 20)
    assert points == draw_points(space, 20)  # a resumed benchmark trains the same configurations
    assert all(p.contains(point[p.name]) for point in points for p in space.params if p.name in point)
    assert len({point["train.batch_size"] for point in points}) > 1


def test_stop_leftovers_stops_only_searches_a_killed_benchmark_left(tmp_path):
    import subprocess
    import time

    from cae.bench.process import stop_leftovers

    # `exec -a` names the process as `cae search …` would appear in /proc/<pid>/cmdline
    ours = subprocess.Popen(["bash", "-c", "exec -a 'cae search x.yaml' sleep 60"], start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a reused pid: not ours to stop
    (tmp_path / "a.pid").write_text(str(ours.pid))
    (tmp_path / "b.pid").write_text(str(other.pid))
    time.sleep(0.2)  # let bash exec
    try:
        stop_leftovers(tmp_path)
        assert ours.wait(timeout=10) != 0 and other.poll() is None
        assert not list(tmp_path.glob("*.pid"))
    finally:
        other.kill()
        ours.kill()


@pytest.mark.slow  # starts two `cae search` processes
def test_searches_run_each_in_a_fresh_process_two_at_a_time(tmp_path):
    import dataclasses
    import os

    from cae.bench.efficiency import measure_efficiency
    from cae.bench.studies import bench_env

    plan = dataclasses.replace(QUICK, subset=64, epochs=1, trials=2, strategies=("random", "tpe+sha"), lanes=2)
    store = Store(tmp_path / "quick.json", "quick", plan.as_dict())
    with bench_env() as env:
        measure_efficiency(plan, env, "sample", store, "test host")
        leftovers = list(env.root.glob("bench-quick-*.pid")) + list(env.root.glob("bench-quick-*.yaml"))
    again = read_raw(tmp_path / "quick.json")
    runs = {k: e["result"] for k, e in again["measurements"].items()}
    assert set(runs) == {"search/random/seed0", "search/tpe+sha/seed0"}
    for result in runs.values():
        assert sum(t["state"] in ("COMPLETE", "PRUNED") for t in result["trials"]) == 2
        assert result["threads"] == max(1, (os.cpu_count() or 1) // 2) and result["wall_seconds"] > 0
    assert runs["search/random/seed0"]["study"] == "bench-quick-random-s0-a1" and not leftovers
    assert again["meta"]["segments"] == 1 and again["attempts"] == {k: 1 for k in runs}


def test_the_default_pruner_is_the_winner_of_the_committed_pruner_rerun():
    from pathlib import Path

    from cae.bench.plan import PRUNER_STRATEGY
    from cae.bench.render import runs_by
    from cae.search_config import load_search

    repo = Path(__file__).resolve().parent.parent
    data = read_raw(repo / "results/bench/pruners.json")
    runs = {name: [r["trials"] for r in seeds.values()] for name, seeds in runs_by(data, "search").items()}
    eff = an.efficiency(runs)
    winner = an.fastest(eff, [n for n in PRUNER_STRATEGY.values() if n != "tpe" and n in eff.rows])
    assert PRUNER_STRATEGY[load_search(repo / "experiments/search.yaml").pruner.name] == winner
