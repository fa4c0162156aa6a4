"""The benchmark's report: tables and goal verdicts from recorded timings (no timing is asserted)."""

from cae.bench.run import NOTES_MARKER, QUICK, time_to_target, write_markdown

DATA = {
    "throughput": {
        "images": 1000,
        "data_source": "sample",
        # seconds per timed epoch, per pipeline; harness 2 s vs bare 1.6 s -> ratio 0.80
        "bs32": {"harness": [2.0, 2.0, 3.0], "tf.data element shuffle": [2.5], "harness + XLA": [4.0],
                 "bare fit": [1.6, 1.6, 1.0]},
    },
    "search": {
        "random": {"0": [(60.0, 0.004), (600.0, 0.002)], "1": [(60.0, 0.003), (600.0, 0.002)]},
        "tpe+pruning": {"0": [(60.0, 0.003), (120.0, 0.0019)], "1": [(30.0, 0.0015)]},
    },
    "scaling": {"1": [3600.0, 3600.0], "2": [2000.0, 2000.0]},  # 4 trials/h -> 7.2 trials/h: 1.80x
    "overhead": {"rows": [{"trial_seconds": 10.0, "bare_fit_seconds": 9.0, "build_seconds": 0.2}]},
}  # fmt: skip


def test_report_computes_ratios_and_goal_verdicts(tmp_path):
    out = write_markdown(QUICK, DATA, tmp_path / "B.md", "make bench", 60.0, figures=tmp_path)
    text = out.read_text()
    assert "| 0.80 |" in text  # harness/bare of the medians, 500 img/s vs 625 img/s
    # target = random's median best 0.002; TPE reaches it at 2 min and 0.5 min -> median 1.25 vs 10 min
    assert "Target: validation MSE 0.002000" in text
    assert "TPE + pruning needed 12% of random search's time to the target (goal ≤ 25 %: met)" in text
    assert "| 2 | 7 (7–7) | 1.80 |" in text and "Goal ≥ 1.6×: met." in text
    assert "Median overhead 10.0% of trial time" in text
    assert (tmp_path / "search_progress-quick.png").stat().st_size > 1000


def test_hand_written_notes_survive_a_rewrite(tmp_path):
    out = tmp_path / "B.md"
    write_markdown(QUICK, DATA, out, "make bench", 60.0, figures=tmp_path)
    out.write_text(out.read_text() + f"\n{NOTES_MARKER}\n\n## Why the harness is slower\n\nMeasured reason.\n")
    write_markdown(QUICK, {"overhead": DATA["overhead"]}, out, "make bench", 60.0, figures=tmp_path)
    text = out.read_text()
    assert text.count(NOTES_MARKER) == 1 and text.endswith("Measured reason.\n")
    assert "## 1. Training throughput" not in text  # the tables are regenerated, not appended


def test_time_to_target_is_the_first_finish_at_or_below_it():
    assert time_to_target([(10.0, 0.5), (20.0, 0.2), (30.0, 0.1)], 0.2) == 20.0
    assert time_to_target([(10.0, 0.5)], 0.2) == float("inf")
