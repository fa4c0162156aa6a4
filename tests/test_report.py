import re

import optuna
import pytest

from cae.errors import CAEError
from cae.paths import project_root, study_dir
from cae.report.build import build_report
from cae.report.data import Against, BestTrial, FrontPoint, Importance, ReportData, ScoredModel
from cae.report.locations import repo_relative, shown_storage
from cae.report.points import Point, importance, pareto_front
from cae.report.render import render
from cae.report.retrain import _read_cached
from cae.tracking import Tracker

from .studies import tiny_search


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


@pytest.mark.slow  # a real study end to end
def test_report_names_the_best_trial_and_links_images_that_exist(tmp_path_factory, tracking_uri):
    # No pruning: fANOVA needs several COMPLETE trials, and the default pruner stops most of 3 tiny ones.
    cfg = tiny_search(tmp_path_factory.mktemp("report"), "rep", trials=3, **{"pruner.name": "none"})
    report = build_report(cfg, epochs=1, tracker=Tracker(tracking_uri))
    text = report.read_text()
    study = optuna.load_study(study_name="rep", storage=cfg.storage)
    assert f"## Best trial: #{study.best_trial.number} " in text
    # Every completed trial's own model is kept, so the report can score each code size on test.
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all((study_dir("rep") / "models" / f"trial-{t.number}.keras").exists() for t in done)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"reconstructions.png", "optimization_history.png"} <= set(links)
    assert "size_vs_error.png" not in links and "Too few completed trials (3)" in text  # 3 trials: no ρ = ±1
    for link in links:
        assert (report.parent / link).stat().st_size > 1000, link
    figures = {p.name for p in report.parent.glob("*.png")}
    assert figures <= set(links), figures - set(links)  # every figure the report wrote is linked from it
    assert "PCA at code" in text and "vs thumbnail" in text and "reference CAE (baseline run)" in text
    # A user's report states facts against baselines: none of this project's aims, and it says it is small.
    assert "aim" not in text.lower() and "**A run too short for rankings**: 2 epoch(s)" in text
    assert "**A run too small to judge the search**: 3 finished trial(s)" in text
    assert report.parent == study_dir("rep") / "report"  # the user's own space, never a tracked file
    # Committed reports carry repository-relative paths only: the bundled sample, the test's SQLite storage.
    assert "Data: `sample` (cae/assets/cifar10-sample.tar.gz)" in text
    assert f"Optuna storage `sqlite:///{repo_relative(cfg.storage.removeprefix('sqlite:///'))}`" in text
    assert str(project_root()) not in text and "sqlite:////" not in text
    parent = Tracker(tracking_uri).find_study_parent("rep")
    assert "report/search.md" in {a.path for a in Tracker(tracking_uri).client.list_artifacts(parent, "report")}


@pytest.mark.slow  # a real study end to end
def test_data_naming_the_studys_own_data_scores_its_own_models_and_other_data_retrains(tmp_path_factory, tracking_uri):
    # `make report DATA=<the archive the study ran on>` once retrained the reference and the best for
    # the full budget (~40 min for a hybrid on 2 cores) instead of scoring the models the study kept.
    cfg = tiny_search(tmp_path_factory.mktemp("same"), "rep-same", trials=1, **{"pruner.name": "none"})
    retrains = study_dir("rep-same") / "report"
    text = build_report(cfg, data={"data.source": "sample"}, tracker=Tracker(tracking_uri)).read_text()
    assert "each trial's own model (no retraining)" in text and not list(retrains.glob("*.keras"))
    text = build_report(cfg, data={"data.subset": 160}, tracker=Tracker(tracking_uri)).read_text()
    assert "(retrained)" in text and list(retrains.glob("best-trial-*.keras"))  # 160 images: other data


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

    from cae.paths import study_dir
    from cae.search.run import run_search
    from cae.search_config import load_search

    repo = Path(__file__).resolve().parent.parent
    cfg = load_search(
        repo / "experiments/pareto.yaml",
        {
            "study": "rd",
            "trials": 2,
            "storage": f"sqlite:///{tmp_path_factory.mktemp('rd')}/optuna.db",
            "experiment.data.source": "sample",
            "experiment.data.subset": 240,
            "experiment.train.epochs": 1,
        },
    )
    run_search(cfg)
    study = optuna.load_study(study_name="rd", storage=cfg.storage)
    assert len(study.directions) == 2 and study.best_trials  # a non-empty Pareto front
    assert (study_dir("rd") / "plots" / "pareto_front.png").stat().st_size > 1000
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all((study_dir("rd") / "models" / f"trial-{t.number}.keras").exists() for t in done)
    text = build_report(cfg, epochs=1, tracker=Tracker(tracking_uri)).read_text()
    assert "| trial | code values |" in text and "![pareto front](pareto_front.png)" in text


# --------------------------------------------------------------------------------------------
# The Markdown from a hand-built data object: no study, no training


def _scored(
    label: str,
    psnr: float,
    mse: float,
    *,
    code: int = 768,
    latent: int = 1_024,
    q8: float | None = None,
    pca: float | None = 25.0,
    pca_q8: float | None = 24.9,
    thumb: float | None = 24.0,
    photos: float | None = None,
    photos_pca: float | None = None,
    retrained: bool = False,
) -> ScoredModel:
    return ScoredModel(
        label,
        f"run-{label}",
        30,
        retrained,
        12_345,
        code,
        latent,
        mse,
        psnr,
        0.91,
        psnr - 0.4 if q8 is None else q8,
        3.5,
        Against(pca, pca_q8, thumb),
        photos,
        Against(photos_pca, None, None),
    )


def _report_data(**changes) -> ReportData:
    values = dict(
        study="hand",
        generated="2026-01-02 03:04",
        command="make report STUDY=hand",
        machine="CPU x2",
        data_source="path",
        data_location="../shared/data/cifar10-jpeg.tar.gz",
        split=(48_000, 6_000, 6_000),
        seed=42,
        parent_run_id="parent123",
        storage="runs/optuna.db",
        states={"COMPLETE": 9, "PRUNED": 1},
        objectives=["best_val_loss"],
        epochs_per_trial=30,
        wall_seconds=5400.0,
        trial_seconds=3000.0,
        space="search_spaces/reconstruction.yaml",
        best=BestTrial(7, 0.000417, "bestrun", {"model.filters": 41, "train.learning_rate": 0.0012}, 99_000, 768, 768),
        budget=30,
        reference=_scored("reference", 27.0, 0.002),
        top=_scored("best", 30.0, 0.001, code=832, latent=832, pca=29.0, pca_q8=28.9, thumb=None),
        rho_code=(-0.71, 0.01),
        rho_params=(0.1, 0.7),
        n_completed=9,
        single_objective=True,
        front=[
            FrontPoint(2, 192, 5_000, 0.004, Against(22.0, 22.0, 22.5)),
            FrontPoint(7, 768, 99_000, 0.000417, Against(33.0, 32.9, 26.0)),
            FrontPoint(9, 3_000, 150_000, 0.0003, Against(45.0, 44.0, None)),
        ],
        pca_test={192: 25.0, 512: 31.5, 832: 38.7},
        pca_q8_test={192: 24.9, 512: 31.4, 832: 38.5},
        importances=[
            Importance("model.filters", 0.62, rho=-0.8),
            Importance("model.latent_activation", 0.38, by_choice=[("linear", 0.0011, 2), ("relu", 0.003, 1)]),
        ],
        images={"param_importances": "param_importances.png", "compare": "compare.png"},
        colorization="colorization.md",
    )
    return ReportData(**{**values, **changes})


def test_rendered_markdown_states_margins_aims_importances_and_links():
    text = render(_report_data())
    assert text.startswith("# Search report: `hand`\n")
    assert "by `make report STUDY=hand` on CPU x2" in text
    assert "Data: `path` (../shared/data/cifar10-jpeg.tar.gz), split 48,000/6,000/6,000 (seed 42)" in text
    assert "- Trials: 10 (9 COMPLETE, 1 PRUNED); objectives ['best_val_loss']; 30 epochs per trial at most." in text
    assert "- Wall time: 1.50 h from first start to last finish (50.0 min of trial time)." in text
    assert "## Best trial: #7 (validation MSE 0.000417, MLflow run `bestrun`)" in text
    # Scored rows: margins against PCA (float at the code size, 8-bit at the latent's bytes) and the thumbnail.
    assert "each trial's own model (no retraining)" in text
    assert (
        "| reference | 30 (its own) | 12,345 | 768 / 1,024 | 0.002000 | 27.00 | 0.9100 | 25.00 | +2.00 | 26.60 | "
        "24.90 | +1.70 | 24.00 | +3.00 |"
    ) in text
    assert "| best | 30 (its own) | 12,345 | 832 / 832 | 0.001000 | 30.00 | 0.9100 | 29.00 | +1.00 |" in text
    assert "| 28.90 | +0.70 | n/a | n/a |" in text  # no thumbnail of that size: n/a, not a number
    assert "is +3.00 dB against it" in text and "+1.00 dB against PCA at its 832 values" in text
    assert "aim" not in text.lower() and "too small" not in text  # 9 completed trials of 30 epochs: said plainly
    # fANOVA's meaning, not "the explained variance" of another evaluator.
    assert (
        "- `model.filters`: 62% share of the variance of validation MSE explained by single parameters "
        "(fANOVA); higher values went with lower error (Spearman ρ = -0.80)."
    ) in text
    assert "One code size per study: `make pareto`" in text  # correlations across sizes: the two-objective study
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links == [
        "reconstructions.png",
        "compare.png",
        "param_importances.png",
        "colorization.md",
    ]  # one code size: no rate–distortion or size-vs-error section
    assert text.endswith("See [the colorization report](colorization.md).\n")


def test_a_small_study_says_it_is_too_small_instead_of_importances_and_correlations():
    data = _report_data(
        importances=[],
        n_completed=3,
        images={"pareto_front": "pareto_front.png"},
        colorization=None,
        single_objective=False,
    )
    text = render(data)
    assert (
        "Too few completed trials (3) to say what mattered: importances and rank correlations need at least 8."
    ) in text
    assert "Spearman" not in text and "size_vs_error.png" not in text  # no ρ = ±1.00 from three points
    assert "## Loss curves" not in text and "## Colorization" not in text
    assert text.rstrip().endswith("![pareto front](pareto_front.png)")


def test_a_study_is_too_small_by_its_finished_trials_not_its_completed_ones():
    # Under a pruner most of 30 trials are pruned: each still a point the search judged.
    pruned_most = render(_report_data(states={"COMPLETE": 7, "PRUNED": 23}, n_completed=7))
    assert "too small" not in pruned_most
    few = render(_report_data(states={"COMPLETE": 2, "PRUNED": 6, "FAIL": 3}, n_completed=2))
    assert "**A run too small to judge the search**: 8 finished trial(s)" in few


def test_a_study_across_code_sizes_has_its_front_against_pca_on_validation():
    text = render(_report_data(single_objective=False))
    # Front table: validation PSNR from the MSE (0.004 -> 23.98 dB), margins vs PCA and thumbnail on validation.
    assert "| 2 | 192 | 5,000 | 0.004000 | 23.98 | 22.00 | +1.98 | +1.48 |" in text
    assert "| 9 | 3,000 | 150,000 | 0.000300 | 35.23 | 45.00 | -9.77 | n/a |" in text
    assert "rate_distortion.png" in text
    assert "code size vs validation MSE has Spearman ρ = -0.71 (p = 0.01): a clear negative rank correlation" in text


def test_the_search_is_held_against_its_enqueued_starting_point():
    prior = _scored("trial 0", 29.5, 0.0011)
    text = render(_report_data(ablation=[prior]))
    assert "The search's best (trial 7) is +0.50 dB on test against trial 0, an enqueued point" in text
    same = _scored("best", 30.0, 0.001, code=832, latent=832, pca=29.0, pca_q8=28.9, thumb=None)
    assert "it found nothing better" in render(_report_data(ablation=[same]))


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


def test_an_enqueued_point_that_was_pruned_is_said_with_how_far_it_got():
    from cae.report.data import StoppedPoint

    stopped = StoppedPoint(2, "pca_init=False, encode_layers=2", "PRUNED", 3, 26.60, 832, 38.84)
    text = render(_report_data(ablation=[], stopped=[stopped]))
    assert (
        "- Trial 2 (pca_init=False, encode_layers=2): pruned at 26.60 dB validation PSNR after 3 epoch(s) "
        "(PCA at its 832 values: 38.84 dB); no model of it was kept."
    ) in text
    assert "## The search against its starting points" in text
    assert "## The search against its starting points" not in render(_report_data(ablation=[], stopped=[]))


def test_a_pruned_two_objective_point_is_told_from_its_rungs():
    """Seen in the two-objective study: a 640-value point pruned at rung 1 was said to have stopped
    "before its first epoch", as such trials report no epochs to Optuna, only rung values."""
    from cae.baselines import BaselineTable
    from cae.report.measure import stopped_points

    study = optuna.create_study(directions=["minimize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    attrs = {"enqueued": "code_budget=640", "latent_values": 640, "rung_1": 0.13, "rung_3": 0.23}
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.PRUNED, params={"x": 0.5}, distributions=dist, user_attrs=attrs
        )
    )
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"x": 0.5},
            distributions=dist,
            user_attrs={"enqueued": "code_budget=384", "latent_values": 384},
        )
    )
    val = BaselineTable("validation", pca={640: 30.00, 384: 28.00}, pca_q8={}, thumbnail=[])
    pruned, failed = stopped_points(study, val)
    assert (pruned.epochs, pruned.pca_val) == (3, 30.00)
    assert pruned.val_psnr == pytest.approx(30.23)
    assert (failed.epochs, failed.val_psnr) == (0, None)
    text = render(_report_data(ablation=[], stopped=[pruned, failed]))
    assert "Trial 0 (code_budget=640): pruned at 30.23 dB validation PSNR after 3 epoch(s)" in text
    assert "Trial 1 (code_budget=384): fail before its first epoch" in text
    unmeasured = stopped_points(study, None)[0]  # no PCA table: how far it got, without a PSNR
    assert "pruned after 3 epoch(s); no model" in render(_report_data(ablation=[], stopped=[unmeasured]))


def test_same_data_is_judged_by_digest_subset_and_seed_of_the_best_trial():
    from types import SimpleNamespace

    from cae.report.build import _same_data

    splits = SimpleNamespace(digest="d1")  # what DATA= loads, whatever its path is called
    recorded = {"data_digest": "d1", "subset": None}
    best = {"config": {"data": {"subset": None}, "seed": 42}}
    assert _same_data({}, splits, recorded, best)
    assert _same_data(
        {"data.source": "elsewhere/cifar10.tar.gz", "data.subset": None, "seed": 42}, splits, recorded, best
    )
    assert not _same_data({"data.source": "x"}, SimpleNamespace(digest="d2"), recorded, best)
    assert not _same_data({"data.subset": 3000}, splits, recorded, best)
    assert not _same_data({"seed": 7}, splits, recorded, best)
    extended = {**recorded, "extensions": [{"changed": {"data_digest": ["d0", "d1"]}}]}
    assert not _same_data({"data.source": "x"}, splits, extended, best)  # the best may predate the new data


def test_a_point_stopped_and_queued_again_is_told_by_its_retry():
    """A real (in-memory) study: an interrupted enqueued point, completed by its retry (Optuna's retry chain)."""
    from cae.report.measure import stopped_points

    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def add(state, retries=None, **attrs):
        system = {"failed_trial": retries, "retry_history": [retries]} if retries is not None else {}
        values = {"value": 0.1} if state == "COMPLETE" else {}
        study.add_trial(
            optuna.create_trial(
                state=getattr(optuna.trial.TrialState, state),
                params={"x": 0.5},
                distributions=dist,
                user_attrs=attrs,
                system_attrs=system,
                **values,
            )
        )

    add("FAIL", enqueued="pca_init=True", fail_reason="interrupted (Ctrl-C)")
    add("COMPLETE", 0, enqueued="pca_init=True")
    add("PRUNED", enqueued="pca_init=False")
    assert [p.trial for p in stopped_points(study, None)] == [2]
