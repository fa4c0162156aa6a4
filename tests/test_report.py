import re

import optuna
import pytest

from cae.errors import CAEError
from cae.report.build import Point, build_report, pareto_front
from cae.tracking import Tracker

from .studies import tiny_search


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_report_names_the_best_trial_and_links_images_that_exist(tmp_path_factory, tracking_uri):
    cfg = tiny_search(tmp_path_factory.mktemp("report"), "rep", trials=3)
    report = build_report(cfg, epochs=1, tracker=Tracker(tracking_uri))
    text = report.read_text()
    best = optuna.load_study(study_name="rep", storage=cfg.storage).best_trial.number
    assert f"## Best trial: #{best} " in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"reconstructions.png", "rate_distortion.png", "size_vs_error.png"} <= set(links)
    for link in links:
        assert (report.parent / link).stat().st_size > 1000, link
    assert "thumbnail at equal size" in text and "Spearman" in text
    parent = Tracker(tracking_uri).find_study_parent("rep")
    assert "report/search.md" in {a.path for a in Tracker(tracking_uri).client.list_artifacts(parent, "report")}


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
    from cae.report.build import front_verdict

    text = front_verdict({5: 2.23, 7: 2.99, 44: 8.03})
    assert text.startswith("Target missed: 2 of 3")
    assert "trial 5 (+2.23 dB, 0.77 dB short)" in text and "trial 7" in text and "trial 44" not in text
    assert front_verdict({44: 8.03, 4: 3.8}).startswith("Every front point") and "+3.80" in front_verdict({4: 3.8})
    assert "no margin" in front_verdict({})
