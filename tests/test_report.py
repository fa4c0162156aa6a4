import re

import optuna
import pytest

from cae.errors import CAEError
from cae.paths import project_root
from cae.report.build import build_report
from cae.report.data import BestTrial, FrontPoint, Importance, ReportData, Retrained
from cae.report.locations import repo_relative, shown_storage
from cae.report.points import Point, importance, pareto_front
from cae.report.render import front_reach, front_verdict, render
from cae.report.retrain import _read_cached
from cae.tracking import Tracker

from .studies import tiny_search


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


@pytest.mark.slow  # a real study end to end
def test_report_names_the_best_trial_and_links_images_that_exist(tmp_path_factory, tracking_uri):
    # No pruning: fANOVA needs several COMPLETE trials, and Hyperband (the default) stops most of 3 tiny ones.
    cfg = tiny_search(tmp_path_factory.mktemp("report"), "rep", trials=3, **{"pruner.name": "none"})
    report = build_report(cfg, epochs=1, tracker=Tracker(tracking_uri))
    text = report.read_text()
    best = optuna.load_study(study_name="rep", storage=cfg.storage).best_trial.number
    assert f"## Best trial: #{best} " in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"reconstructions.png", "rate_distortion.png", "size_vs_error.png"} <= set(links)
    for link in links:
        assert (report.parent / link).stat().st_size > 1000, link
    assert "thumbnail at equal size" in text and "Spearman" in text
    assert "of the variance of validation MSE explained by single parameters (fANOVA)" in text
    # Committed reports carry repository-relative paths only: the bundled sample, the test's SQLite storage.
    assert "Data: `sample` (cae/assets/cifar10-sample.tar.gz)" in text
    assert f"Optuna storage `sqlite:///{repo_relative(cfg.storage.removeprefix('sqlite:///'))}`" in text
    assert str(project_root()) not in text and "sqlite:////" not in text
    parent = Tracker(tracking_uri).find_study_parent("rep")
    assert "report/search.md" in {a.path for a in Tracker(tracking_uri).client.list_artifacts(parent, "report")}


@pytest.mark.slow  # a real study end to end
def test_a_study_with_only_pruned_trials_gets_a_clear_message(tmp_path_factory, tracking_uri, monkeypatch):
    import cae.search.study as study

    monkeypatch.setattr(study, "make_pruner", lambda cfg: AlwaysPrune())
    cfg = tiny_search(tmp_path_factory.mktemp("pruned"), "rep-pruned", trials=2)
    with pytest.raises(CAEError, match=r"study 'rep-pruned' has no completed trial \(2 PRUNED\): nothing to report"):
        build_report(cfg, tracker=Tracker(tracking_uri))


def test_pareto_front_keeps_only_undominated_points():
    pts = [
        Point(0, 768, 1, 0.004, {}),
        Point(1, 256, 1, 0.006, {}),
        Point(2, 512, 1, 0.007, {}),
        Point(3, 1024, 1, 0.003, {}),
        Point(4, 1024, 1, 0.0035, {}),
    ]
    assert [p.trial for p in pareto_front(pts)] == [1, 0, 3]


@pytest.mark.slow  # a real study end to end
def test_a_two_objective_study_gives_a_front_and_its_plots(tmp_path_factory, tracking_uri):
    from pathlib import Path

    from cae.config import load_search
    from cae.paths import study_dir
    from cae.search.run import run_search

    repo = Path(__file__).resolve().parent.parent
    cfg = load_search(repo / "experiments/pareto.yaml", {
        "study": "rd", "trials": 2, "storage": f"sqlite:///{tmp_path_factory.mktemp('rd')}/optuna.db",
        "experiment.data.source": "sample", "experiment.data.subset": 240, "experiment.train.epochs": 1,
    })  # fmt: skip
    run_search(cfg)
    study = optuna.load_study(study_name="rd", storage=cfg.storage)
    assert len(study.directions) == 2 and study.best_trials  # a non-empty Pareto front
    assert (study_dir("rd") / "plots" / "pareto_front.png").stat().st_size > 1000
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all((study_dir("rd") / "models" / f"trial-{t.number}.keras").exists() for t in done)
    text = build_report(cfg, epochs=1, tracker=Tracker(tracking_uri)).read_text()
    assert "| trial | code values |" in text and "![pareto front](pareto_front.png)" in text


def test_front_verdict_names_each_point_below_the_bar():
    text = front_verdict({5: 2.23, 7: 2.99, 44: 8.03})
    assert text.startswith("Target missed: 2 of 3")
    assert "trial 5 (+2.23 dB, 0.77 dB short)" in text and "trial 7" in text and "trial 44" not in text
    assert front_verdict({44: 8.03, 4: 3.8}).startswith("Every front point") and "+3.80" in front_verdict({4: 3.8})
    assert "no margin" in front_verdict({})


def test_a_front_that_stops_short_of_the_largest_size_says_what_it_leaves_uncovered():
    front = [FrontPoint(16, 256, 8_272, 0.005835, 21.24), FrontPoint(20, 512, 7_637, 0.001983, 23.62)]
    text = front_reach(front, (2_028, 31.50))
    assert text.startswith("The front ends at 512 values") and "trial 20" in text
    assert "from 512 to 2,028 values the best this study offers is that trial's 27.03 dB" in text
    assert "against 31.50 dB for the thumbnail at 2,028 values (-7.47 dB from the 3 dB bar there)" in text
    assert front_reach(front, (512, 23.62)) == "" and front_reach([], (2_028, 31.5)) == ""


# --------------------------------------------------------------------------------------------
# The Markdown from a hand-built data object: no study, no training


def _retrained(label: str, psnr: float, mse: float, thumb: float | None) -> Retrained:
    return Retrained(label, f"run-{label}", 12_345, 768, 1_024, mse, psnr, 0.91, psnr - 0.4, 3.5, thumb, 26.0)


def _report_data(**changes) -> ReportData:
    values = dict(
        study="hand", generated="2026-01-02 03:04", command="make report STUDY=hand EPOCHS=30", machine="CPU x2",
        data_source="path",
        data_location="../shared/data/cifar10-jpeg.tar.gz", split=(48_000, 6_000, 6_000), seed=42,
        parent_run_id="parent123", storage="runs/optuna.db", states={"COMPLETE": 3, "PRUNED": 1},
        objectives=["best_val_loss"], epochs_per_trial=5, wall_seconds=5400.0, trial_seconds=3000.0,
        space="search_spaces/reconstruction.yaml",
        best=BestTrial(7, 0.000417, "bestrun", {"model.filters": 41, "train.learning_rate": 0.0012}, 99_000, 768,
                       768),
        budget=30, reference=_retrained("reference", 27.0, 0.002, 25.0),
        top=_retrained("best-trial-7", 30.0, 0.001, None),
        rho_code=(-0.71, 0.01), rho_params=(0.1, 0.7), n_completed=3, single_objective=True,
        front=[FrontPoint(2, 192, 5_000, 0.004, 22.5), FrontPoint(7, 768, 99_000, 0.000417, 26.0),
               FrontPoint(9, 6_000, 150_000, 0.0003, None)],
        importances=[Importance("model.filters", 0.62, rho=-0.8), Importance(
            "model.latent_activation", 0.38, by_choice=[("linear", 0.0011, 2), ("relu", 0.003, 1)])],
        images={"param_importances": "param_importances.png", "compare": "compare.png"}, colorization="colorization.md",
    )  # fmt: skip
    return ReportData(**{**values, **changes})


def test_rendered_markdown_states_front_verdict_importances_and_links():
    text = render(_report_data())
    assert text.startswith("# Search report: `hand`\n")
    assert "by `make report STUDY=hand EPOCHS=30` on CPU x2" in text
    assert "Data: `path` (../shared/data/cifar10-jpeg.tar.gz), split 48,000/6,000/6,000 (seed 42)" in text
    assert "Optuna storage `runs/optuna.db`" in text
    assert "- Trials: 4 (3 COMPLETE, 1 PRUNED); objectives ['best_val_loss']; 5 epochs per trial at most." in text
    assert "- Wall time: 1.50 h from first start to last finish (50.0 min of trial time)." in text
    assert "## Best trial: #7 (validation MSE 0.000417, MLflow run `bestrun`)" in text
    assert "| `train.learning_rate` | 0.0012 |" in text
    # Retrained rows: margin against the thumbnail where the code size is inside its curve, n/a outside.
    assert "| reference | 12,345 | 768 / 1,024 | 0.002000 | 27.00 | 0.9100 | 25.00 | +2.00 | 26.60 | 26.00 |" in text
    assert "| best-trial-7 | 12,345 | 768 / 1,024 | 0.001000 | 30.00 | 0.9100 | n/a | n/a |" in text
    assert "is +3.00 dB against the reference at the same budget (2.00× lower test MSE)" in text
    # Front table: validation PSNR from the MSE (0.004 -> 23.98 dB), margin, n/a outside the curve.
    assert "| 2 | 192 | 5,000 | 0.004000 | 23.98 | 22.50 | +1.48 |" in text
    assert "| 7 | 768 | 99,000 | 0.000417 | 33.80 | 26.00 | +7.80 |" in text
    assert "| 9 | 6,000 | 150,000 | 0.000300 | 35.23 | n/a | n/a |" in text
    assert "On validation: Target missed: 1 of 2 front points beat the thumbnail of equal size by less than 3 dB: " \
           "trial 2 (+1.48 dB, 1.52 dB short)." in text  # fmt: skip
    assert "On test" not in text  # no front model was scored on test
    # fANOVA's meaning, not "the explained variance" of another evaluator.
    assert ("- `model.filters`: 62% share of the variance of validation MSE explained by single parameters "
            "(fANOVA); higher values went with lower error (Spearman ρ = -0.80).") in text  # fmt: skip
    assert (
        "- `model.latent_activation`: 38% share of the variance of validation MSE explained by single "
        "parameters (fANOVA); mean val MSE by choice: linear 0.00110 (n=2), relu 0.00300 (n=1)."
    ) in text
    assert "code size vs validation MSE has Spearman ρ = -0.71 (p = 0.01): a clear negative rank correlation" in text
    assert "ρ = 0.10 (p = 0.7): no clear monotonic relation. This study caps the code size" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links == ["reconstructions.png", "compare.png", "param_importances.png", "size_vs_error.png",
                     "rate_distortion.png", "colorization.md"]  # fmt: skip
    assert "![pareto front]" not in text and text.endswith("See [the colorization report](colorization.md).\n")


def test_rendered_markdown_without_optional_parts():
    data = _report_data(importances=[], n_completed=1, images={"pareto_front": "pareto_front.png"}, colorization=None,
                        single_objective=False, front=[FrontPoint(2, 12_000, 5_000, 0.004, None)])  # fmt: skip
    text = render(data)
    assert "- (importances need at least two completed trials)" in text
    assert "ρ = 0.10 (p = 0.7): no clear monotonic relation.\n" in text  # no code-size-cap sentence, no trailing space
    assert "## Loss curves" not in text and "## Colorization" not in text and "caps the code size" not in text
    assert "No front point has a code size inside the thumbnail curve's range" in text
    assert text.rstrip().endswith("![pareto front](pareto_front.png)")


def test_importance_trend_of_numeric_and_categorical_parameters():
    pts = [
        Point(i, 100, 1, err, {"f": f, "act": act})
        for i, (f, act, err) in enumerate([(8, "relu", 0.004), (16, "linear", 0.002), (32, "linear", 0.001)])
    ]
    assert importance("f", 0.5, pts).rho == pytest.approx(-1.0)
    assert importance("act", 0.5, pts).by_choice == [("linear", pytest.approx(0.0015), 2), ("relu", 0.004, 1)]


def test_paths_in_reports_are_repository_relative():
    root = project_root()
    shared = root.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    assert repo_relative(shared) == "../shared/data/cifar10-jpeg.tar.gz"
    assert repo_relative("search_spaces/reconstruction.yaml") == "search_spaces/reconstruction.yaml"
    assert shown_storage(None) == "runs/optuna.db"
    assert shown_storage(f"sqlite:///{root}/runs/optuna.db") == "runs/optuna.db"
    assert shown_storage(f"sqlite:///{root}/runs/other.db") == "sqlite:///runs/other.db"
    assert shown_storage(f"journal:///{root}/runs/j.log") == "runs/j.log"
    assert shown_storage("postgresql://cae:secret@db/cae") == "postgresql://cae:***@db/cae"


def test_a_damaged_retrain_cache_is_retrained_not_fatal(tmp_path, capsys):
    record, model = tmp_path / "reference-abc.json", tmp_path / "reference-abc.keras"
    model.write_bytes(b"not a keras archive")
    record.write_text('{"label": "reference"')  # truncated
    assert _read_cached(record, model) is None
    record.write_text('{"label": "reference"}')  # keys missing
    assert _read_cached(record, model) is None
    assert "ignoring the damaged retrain cache reference-abc.json" in capsys.readouterr().out


def test_the_report_names_the_command_with_its_data_settings():
    from cae.report.build import report_command

    assert report_command("s", 30, {"data.source": "../x.tar.gz", "data.subset": None, "seed": 3}) == (
        "make report STUDY=s EPOCHS=30 DATA=../x.tar.gz SUBSET=0 SEED=3"
    )
    assert report_command("s", None, {}) == "make report STUDY=s"


def test_front_points_scored_on_test_get_their_own_columns_and_verdict():
    front = [FrontPoint(2, 192, 5_000, 0.004, 22.5, test_psnr=26.0, test_thumb=22.4),
             FrontPoint(7, 768, 99_000, 0.000417, 26.0, test_psnr=27.5, test_thumb=25.9)]  # fmt: skip
    text = render(_report_data(front=front))
    assert "| 2 | 192 | 5,000 | 0.004000 | 23.98 | 22.50 | +1.48 | 26.00 | 22.40 | +3.60 |" in text
    assert ("On test (each front trial's own model): Target missed: 1 of 2 front points beat the thumbnail of "
            "equal size by less than 3 dB: trial 7 (+1.60 dB, 1.40 dB short).") in text  # fmt: skip
