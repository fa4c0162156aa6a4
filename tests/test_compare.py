"""cae compare: trials selected from MLflow, their curves overlaid, their table as CSV."""

import csv

import pytest

from cae.compare import TrialRow, columns, compare, select, varying_keys
from cae.errors import CAEError
from cae.space import load_space
from cae.tracking import Tracker

from .studies import tiny_search


@pytest.fixture(scope="module")
def studies(tmp_path_factory, tracking_uri):
    tmp = tmp_path_factory.mktemp("compare")
    # Trials cost ~10 s each (tracing): three in one study (a top 2 that leaves one out), one in the other.
    return tiny_search(tmp, "cmp-a", trials=3), tiny_search(tmp, "cmp-b", trials=1)


def test_top_k_are_the_best_trials_in_order_and_the_csv_matches_mlflow(studies, tracking_uri, tmp_path):
    tracker = Tracker(tracking_uri)
    rows, png, csv_path = compare(["cmp-a"], top=2, out_dir=tmp_path, tracker=tracker)
    parent = tracker.find_study_parent("cmp-a")
    runs = [r for r in tracker.child_runs(parent, "cmp-a") if "best_val_loss" in r.data.metrics]
    assert len(runs) == 3
    expected = sorted(runs, key=lambda r: r.data.metrics["best_val_loss"])[:2]
    assert [r.run_id for r in rows] == [r.info.run_id for r in expected]
    assert png.read_bytes()[:4] == b"\x89PNG"
    with csv_path.open() as fh:
        table = list(csv.DictReader(fh))
    for line, run in zip(table, expected, strict=True):
        assert float(line["best_val_loss"]) == pytest.approx(run.data.metrics["best_val_loss"], rel=1e-5)
        assert int(line["trial"]) == int(run.data.tags["trial_number"])
        assert int(line["epochs_run"]) == len(tracker.client.get_metric_history(run.info.run_id, "val_loss"))
        assert line["n_params"] == run.data.params["n_params"]
    logged = {a.path for a in tracker.client.list_artifacts(parent, "compare")}
    assert logged == {"compare/compare.png", "compare/compare.csv"}
    # One column per key of the space these trials sampled (a conditional key only where drawn).
    sampled = set(load_space(studies[0].space, studies[0].experiment).names) & set().union(
        *(r.data.params for r in expected)
    )
    assert sampled and sampled <= set(table[0])


def _row(trial: int, params: dict[str, str]) -> TrialRow:
    return TrialRow(
        "s", trial, "COMPLETE", f"run-{trial}", params, 0.01 * (trial + 1), 1.0, {"val_loss": [(1, 0.02), (2, 0.01)]}
    )


def test_csv_columns_come_from_the_runs_sampled_keys():
    """A key new to a space shows up without a code change; derived values are not sampled keys."""
    old = _row(0, {"model.depth": "2", "n_params": "4911", "latent_values": "1024", "bottleneck_values": "768"})
    new = _row(1, {"model.depth": "3", "model.width_multiplier": "1.5", "derived.n_train": "480"})
    cols = columns([old, new])
    assert cols[:4] == ["study", "trial", "state", "model.depth"]
    assert "model.width_multiplier" in cols and "derived.n_train" not in cols and "latent_values" not in cols
    assert cols.index("model.width_multiplier") < cols.index("best_val_loss")  # sampled keys before scores
    assert old.row()["code_values"] == 768 and new.row()["code_values"] == ""  # the narrower layer, if logged
    assert old.label(with_study=False) == "#0 depth=2 (0.01000)"


def test_plot_labels_name_only_the_keys_in_which_the_trials_differ():
    a = _row(0, {"model.depth": "2", "model.filters": "8", "train.batch_size": "32", "n_params": "4911"})
    b = _row(1, {"model.depth": "2", "model.filters": "31", "train.batch_size": "64", "n_params": "9000"})
    c = _row(2, {"model.depth": "2", "model.filters": "8", "train.batch_size": "32", "model.new_key": "1"})
    assert varying_keys([a, b]) == ["model.filters", "train.batch_size"]  # not depth, never n_params
    assert varying_keys([a, c]) == ["model.new_key"]  # a key one trial lacks differs
    assert a.label(with_study=False, keys=varying_keys([a, b])) == "#0 filters=8 batch_size=32 (0.01000)"


def numbers(tracking_uri: str, study: str) -> list[int]:
    """Trial numbers that have a run (skipped trials, over the code budget, have none)."""
    tracker = Tracker(tracking_uri)
    return sorted(int(r.data.tags["trial_number"]) for r in tracker.child_runs(tracker.find_study_parent(study), study))


def test_explicit_trials_two_studies_and_run_ids(studies, tracking_uri, tmp_path):
    tracker = Tracker(tracking_uri)
    first, third = numbers(tracking_uri, "cmp-a")[0], numbers(tracking_uri, "cmp-a")[2]
    rows = select(tracker, ["cmp-a"], trial_ids=[third, first])
    assert [r.trial for r in rows] == [third, first]
    both = select(tracker, ["cmp-a", "cmp-b"], top=1)
    assert [r.study for r in both] == ["cmp-a", "cmp-b"]
    by_id = select(tracker, [], run_ids=[rows[0].run_id])
    assert by_id[0].trial == third and by_id[0].study == "cmp-a"


def test_a_trial_not_in_the_study_names_the_ones_that_are(studies, tracking_uri):
    existing = ", ".join(map(str, numbers(tracking_uri, "cmp-a")))
    with pytest.raises(CAEError) as err:
        select(Tracker(tracking_uri), ["cmp-a"], trial_ids=[99])
    assert str(err.value) == f"trial 99 is not in study 'cmp-a'; its trials: {existing}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"studies": ["nope"]}, "no study 'nope' in MLflow store"),
        ({"studies": ["cmp-a"], "states": ["FAIL"]}, "study 'cmp-a' has no FAIL trials"),
    ],
)
def test_bad_selections_name_what_exists(studies, tracking_uri, kwargs, message):
    with pytest.raises(CAEError, match=message.replace("(", r"\(")):
        select(Tracker(tracking_uri), **kwargs)


def test_a_run_without_curves_is_named(studies, tracking_uri):
    tracker = Tracker(tracking_uri)
    parent = tracker.find_study_parent("cmp-b")
    run = tracker.start_run("cmp-b", "trial-9", parent_id=parent, tags={"trial_number": 9, "trial_state": "COMPLETE"})
    run.log_metrics({"best_val_loss": 0.1})
    run.end()
    with pytest.raises(CAEError, match="has no 'val_loss' history"):
        select(tracker, ["cmp-b"], trial_ids=[9])


def test_a_one_epoch_comparison_has_whole_epoch_ticks_and_a_legend_of_what_is_drawn():
    from cae.compare import drawn, figure

    one = [
        TrialRow("s", t, "COMPLETE", f"run-{t}", {"model.depth": str(t)}, 0.01, 1.0, {"val_loss": [(1, 0.02)]})
        for t in range(3)
    ]
    fig = figure(one, title=drawn(one, ["s"], 5, (), ()))
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "validation (solid)" in labels and "train (dashed)" not in labels and "pruned here" not in labels
    assert ax.get_title() == "all 3 trials, by best validation MSE"  # counts what is drawn, never "the best 5"
    assert drawn(one, ["s"], 3, (), ()) == "3 trials, the best 3 by best validation MSE"
    assert (
        drawn(one * 2, ["a", "b"], 3, (), ())
        == "6 trials, the best 3 (or fewer) of each of 2 studies by best validation MSE"
    )
