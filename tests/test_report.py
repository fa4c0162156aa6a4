import re

import optuna
import pytest

from cae.errors import CAEError
from cae.report import Point, build_report, pareto_front
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
    import cae.search as search

    monkeypatch.setattr(search, "make_pruner", lambda cfg: AlwaysPrune())
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
