"""The searched colorization stage: a real (tiny) study on sample data, its front, report and models."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from cae.colorize.final import describe
from cae.colorize.report import command_of, write_search_report
from cae.colorize.scoring import TEMPERATURES, predict_rgb, validation_scores
from cae.colorize.search import colorization_config, early_points, report_models
from cae.colorize.search_render import Measured, render
from cae.colorize.task import ColorizationTask
from cae.config import ExperimentConfig
from cae.data import load_splits, to_unit
from cae.errors import CAEError, TrialStopped
from cae.schema import with_overrides
from cae.search.best import export_trial, trial_record
from cae.search.run import run_search
from cae.search_config import SearchConfig
from cae.tracking import Tracker
from cae.train import train_and_evaluate

REPO = Path(__file__).resolve().parent.parent
SOURCE_FILTERS = 12  # the source "study"'s best architecture differs from the defaults here


class Collapse(keras.callbacks.Callback):
    """Forces one colour everywhere: the chroma head's weights and bias are zeroed after each batch."""

    def on_train_batch_end(self, batch, logs=None):
        for name in ("output", "chroma_logits"):
            try:
                layer = self.model.get_layer(name)
            except ValueError:
                continue
            for w in layer.weights:
                w.assign(np.zeros(w.shape, dtype="float32"))


@pytest.fixture(scope="module")
def source(tracking_uri):
    """runs/colsrc/best.json: a 1-epoch reconstruction trial with its own width, as a search exports it."""
    config = with_overrides(
        ExperimentConfig(),
        {
            "data.source": "sample",
            "data.subset": 240,
            "train.epochs": 1,
            "model.filters": SOURCE_FILTERS,
            "train.learning_rate": 6e-3,
        },
    )
    result = train_and_evaluate(config, load_splits("sample", config.seed, 240), evaluate_test=False)
    record = trial_record(
        "colsrc",
        7,
        result,
        config,
        {"model.filters": SOURCE_FILTERS},
        run_id="src-run",
        engine="optuna",
        data_source="sample",
        uid=None,
        objective=("best_val_loss", result.best_val_loss, "minimize"),
    )
    export_trial(record, result.model)
    return config


def study_config(tmp: Path, **overrides) -> tuple[SearchConfig, dict]:
    return colorization_config(
        REPO / "experiments/colorize-search.yaml",
        "colsrc",
        {
            "trials": 4,
            "final_epochs": 1,
            "storage": f"sqlite:///{tmp}/optuna.db",
            "experiment.data.subset": 240,
            "experiment.train.epochs": 1,
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def study(source, tracking_uri, tmp_path_factory):
    """4 trials (the last forced to collapse), then the front trained, scored and written up."""
    cfg, lineage = study_config(tmp_path_factory.mktemp("colstudy"))
    run_search(
        cfg,
        ColorizationTask,
        extra_points=early_points(cfg),
        study_attrs={"lineage": lineage},
        extra_callbacks=lambda trial: [Collapse()] if trial.number == 3 else [],
    )
    tracker = Tracker(tracking_uri)
    report = write_search_report(cfg, tracker, report_models(cfg, tracker))
    return cfg, optuna.load_study(study_name=cfg.study, storage=cfg.storage), report


def test_the_config_starts_from_the_source_architecture_with_the_chroma_recipe(source, tmp_path):
    cfg, lineage = study_config(tmp_path)
    assert cfg.study == "colsrc-colorize" and cfg.stage == "colorization" and cfg.source_study == "colsrc"
    model = cfg.experiment.model
    assert model.filters == SOURCE_FILTERS and model.predict == "chroma" and cfg.experiment.data.input == "luma"
    assert cfg.experiment.train.learning_rate == 1e-3 and lineage["searched_learning_rate"] == 6e-3  # capped
    assert (lineage["source_study"], lineage["source_trial"], lineage["source_run_id"]) == ("colsrc", 7, "src-run")
    with pytest.raises(CAEError, match="Optuna only"):
        study_config(tmp_path, engine="keras-tuner")


def test_an_experiment_file_can_stand_for_the_source_study(tmp_path):
    """`make colorize-search FROM=experiments/conv-best.yaml`: no study's best.json is needed."""
    cfg, lineage = colorization_config(
        REPO / "experiments/colorize-search.yaml",
        "ignored",
        {"storage": f"sqlite:///{tmp_path}/optuna.db"},
        source_config="experiments/conv-best.yaml",
    )
    assert cfg.study == "conv-best-colorize" and cfg.source_study == "conv-best"
    assert cfg.source_config == lineage["source_config"] == "experiments/conv-best.yaml"
    assert cfg.experiment.model.filters == 41 and cfg.experiment.model.predict == "chroma"
    assert command_of(cfg).startswith("make colorize-search FROM=experiments/conv-best.yaml TRIALS=")


def test_trial_zero_is_the_source_architecture_and_the_front_is_written(study, tracking_uri):
    _cfg, st, report = study
    first = st.trials[0]
    assert first.user_attrs["recipe"] == "today's best recipe"
    assert first.params["train.loss"] == "mse" and first.params["model.predict"] == "chroma"
    assert first.params["model.width_multiplier"] == 1.0 and "train.rebalance" not in first.params
    assert st.trials[1].params["train.loss"] == "classification" and "model.predict" not in st.trials[1].params
    assert st.trials[2].params["model.semantic"] == 128 and st.trials[2].params["train.class_weight"] == 0.3
    assert len(st.directions) == 2 and st.best_trials
    text = report.read_text()
    for section in (
        "## Targets",
        "## The front",
        "## Final models on the test split",
        "## Every trial",
        "## Shortcomings, measured",
    ):
        assert section in text
    assert (report.parent / "colorization-front.png").stat().st_size > 5000
    assert (report.parent / "colorization-search.png").stat().st_size > 5000


def test_a_collapsed_trial_is_stopped_with_its_reason(study, tracking_uri):
    _cfg, st, _ = study
    stopped = st.trials[3]
    assert stopped.state.name == "PRUNED" and stopped.user_attrs["stop_reason"].startswith("colours collapsed")
    run = Tracker(tracking_uri).get_run(stopped.user_attrs["mlflow_run_id"])
    assert run.data.tags["trial_state"] == "PRUNED" and run.data.tags["error"].startswith("colours collapsed")
    assert f"| {stopped.number} | PRUNED |" in study[2].read_text() and "colours collapsed" in study[2].read_text()


def test_child_runs_carry_lineage_and_curves(study, tracking_uri):
    cfg, st, _ = study
    tracker = Tracker(tracking_uri)
    runs = tracker.child_runs(tracker.find_study_parent(cfg.study), cfg.study)
    assert len(runs) == len(st.trials) == 4
    for run in runs:
        tags = run.data.tags
        assert tags["stage"] == "colorization" and tags["engine"] == "optuna"
        assert (tags["source_study"], tags["source_trial"], tags["source_run_id"]) == ("colsrc", "7", "src-run")
        assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_loss")] == [1]
    complete = [r for r in runs if r.data.tags["trial_state"] == "COMPLETE"]
    assert all({"val_psnr", "val_colourfulness", "val_hasler_cf"} <= set(r.data.metrics) for r in complete)


def test_final_models_are_self_contained_and_record_their_scores(study, tracking_uri):
    from cae.paths import study_dir

    cfg, st, _ = study
    models = sorted((study_dir(cfg.study) / "final").glob("trial-*.keras"))
    assert models and {int(p.stem.split("-")[1]) for p in models} <= {t.number for t in st.best_trials}
    splits = load_splits("sample", 42, 240)
    for path in models:
        record = json.loads(path.with_suffix(".json").read_text())
        assert {"test_psnr", "colourfulness", "test_classifier_acc", "test_hasler_cf"} <= set(record)
        model = keras.models.load_model(path, compile=False)
        assert tuple(model.input.shape[1:]) == (32, 32, 1) and tuple(model.output.shape[1:]) == (32, 32, 3)
        gray = (to_unit(splits.x_test) @ np.array([0.299, 0.587, 0.114], dtype="float32"))[..., None]
        out = model.predict(gray, verbose=0)
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    # Plain Keras, in a process that never imports cae: the decoding is made of built-in layers.
    script = (
        "import sys, keras, numpy as np\n"
        "for path in sys.argv[1:]:\n"
        "    out = keras.models.load_model(path, compile=False).predict(np.full((1, 32, 32, 1), 0.5, 'float32'))\n"
        "    assert out.shape == (1, 32, 32, 3) and 0 <= out.min() and out.max() <= 1, out\n"
        "assert not any(m == 'cae' or m.startswith('cae.') for m in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, models)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=models[0].parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    registered = [json.loads(p.with_suffix(".json").read_text()).get("registered_model") for p in models]
    chosen = [r for r in registered if r]
    assert len(chosen) == 1 and chosen[0]["name"] == cfg.study  # the chosen model, in the registry
    from cae.tracking.registry import load_registered

    loaded = load_registered(Tracker(tracking_uri), cfg.study)
    assert tuple(loaded.input.shape[1:]) == (32, 32, 1)
    classifier = Tracker(tracking_uri).client.get_experiment_by_name("cifar10-classifier")
    runs = Tracker(tracking_uri).client.search_runs([classifier.experiment_id])
    assert runs and "test_accuracy" in runs[0].data.metrics


def test_the_oracle_is_trained_beside_the_chosen_model_and_never_registered(study, tracking_uri):
    from cae.paths import study_dir

    cfg, _st, report = study
    oracles = list((study_dir(cfg.study) / "final").glob("oracle-trial-*.keras"))
    assert len(oracles) == 1
    record = json.loads(oracles[0].with_suffix(".json").read_text())
    assert record["config"]["model"]["semantic_oracle"] is True and "registered_model" not in record
    model = keras.models.load_model(oracles[0], compile=False)
    assert len(model.inputs) == 2  # the luma and the true class
    run = Tracker(tracking_uri).get_run(record["mlflow_run_id"])
    assert run.data.tags["cae.role"] == "oracle" and "test_psnr" in run.data.metrics
    assert "## Oracle bound: the chosen network given the true class" in report.read_text()


@pytest.mark.parametrize("loss", ["mse", "l1", "huber", "classification"])
def test_each_loss_family_trains_and_decodes(loss):
    config = with_overrides(
        ExperimentConfig(),
        {
            "data.source": "sample",
            "data.subset": 160,
            "data.input": "luma",
            "model.predict": "chroma",
            "model.skips": True,
            "train.loss": loss,
            "train.epochs": 1,
        },
    )
    splits = load_splits("sample", config.seed, 160)
    result = train_and_evaluate(config, splits, evaluate_test=False)
    model, scores, attrs = validation_scores(result.model, config, splits, vivid=0.7)
    assert 5 < scores["val_psnr"] < 40 and scores["val_colourfulness"] >= 0
    rgb = predict_rgb(model, splits.x_val[:4], config)
    assert rgb.shape == (4, 32, 32, 3) and rgb.min() >= 0 and rgb.max() <= 1
    if loss == "classification":
        assert attrs["temperature"] in TEMPERATURES and len(attrs["temperature_curve"]) == len(TEMPERATURES)
        scale = model.get_layer("decode_temperature").scale  # the chosen temperature, inside the saved model
        assert scale == pytest.approx(1 / attrs["temperature"])


def test_rung_value_is_probe_psnr_less_the_colourfulness_shortfall():
    from cae.colorize.task import PROBE_IMAGES, rgb_of_training_model
    from cae.metrics import colourfulness_ratio, psnr_from_mse
    from cae.train import build_model

    experiment = with_overrides(ExperimentConfig(), {"data.input": "luma", "model.predict": "chroma"})
    splits = load_splits("sample", 42, 160)
    model = build_model(experiment, splits)
    values = {}
    for vivid in (0.0, 0.7, 5.0):
        cfg = SearchConfig(
            stage="colorization", objectives=("val_psnr", "colourfulness_gap"), vivid=vivid, experiment=experiment
        )
        values[vivid] = ColorizationTask(cfg, splits, {}).rung_value(model, float("nan"), 0)
    truth = to_unit(splits.x_val[:PROBE_IMAGES])
    rgb = rgb_of_training_model(model, splits.x_val[:PROBE_IMAGES], experiment)
    cf = colourfulness_ratio(rgb, truth)
    assert values[0.0] == pytest.approx(psnr_from_mse(float(np.mean((rgb - truth) ** 2))), abs=1e-4)
    assert values[0.0] - values[5.0] == pytest.approx(10 * (5.0 - cf), abs=1e-3)  # a grey model pays
    assert values[0.0] - values[0.7] == pytest.approx(10 * max(0.0, 0.7 - cf), abs=1e-3)


def test_a_collapse_stops_the_task_with_its_reason():
    cfg = SearchConfig(
        stage="colorization",
        objectives=("val_psnr", "colourfulness_gap"),
        experiment=with_overrides(
            ExperimentConfig(), {"data.input": "luma", "model.predict": "chroma", "train.epochs": 2}
        ),
    )
    splits = load_splits("sample", 42, 160)
    task = ColorizationTask(cfg, splits, {"lineage": {"source_study": "x"}})
    from cae.train import build_model

    with pytest.raises(TrialStopped, match=r"colours collapsed: colourfulness 0\.000 after epoch 1"):
        task.train(cfg.experiment, build_model(cfg.experiment, splits), [Collapse()])
    assert task.tags["stage"] == "colorization" and task.tags["source_study"] == "x"


def _measured(**changes) -> Measured:
    from cae.colorize.final import FinalModel

    test = {
        "test_mse": 0.004,
        "test_psnr": 24.0,
        "test_ssim": 0.95,
        "test_colourfulness": 0.72,
        "test_hasler_cf": 20.0,
        "true_hasler_cf": 30.0,
    }
    per_class = {
        "hasler_cf": {"cat": 10.0, "ship": 25.0},
        "true_hasler_cf": {"cat": 20.0, "ship": 25.0},
        "mse": {"cat": 0.005, "ship": 0.003},
    }
    curve = [
        {"temperature": 1.0, "psnr": 24.5, "colourfulness": 0.4},
        {"temperature": 0.38, "psnr": 24.1, "colourfulness": 0.7},
    ]
    final = FinalModel(
        trial=5,
        label="classification (rebalance 0.50), skips",
        run_id="run5",
        config=ExperimentConfig(),
        params={},
        epochs=12,
        val={"val_psnr": 24.1, "val_colourfulness": 0.7},
        test=test,
        classifier_acc=0.55,
        photos_psnr=21.0,
        per_class=per_class,
        path=Path("m.keras"),
        seconds=600.0,
        temperature=0.38,
        curve=curve,
    )
    gray = {
        "test_mse": 0.006,
        "test_psnr": 22.15,
        "test_ssim": 0.95,
        "test_colourfulness": 0.0,
        "test_hasler_cf": 0.0,
        "true_hasler_cf": 30.0,
    }
    base = dict(
        study="s-colorize",
        source="s",
        command="make colorize-search STUDY=s",
        data={
            "data_source": "path",
            "sizes": (48000, 6000, 6000),
            "seed": 42,
            "machine": "CPU x2",
            "epochs": 2,
            "final_epochs": 12,
        },
        trials=[
            {
                "number": n,
                "state": "COMPLETE",
                "recipe": "classification",
                "val_psnr": 23.0,
                "val_colourfulness": 0.6,
                "temperature": 0.38,
                "front": n == 5,
                "first": "",
                "reason": "",
            }
            for n in (3, 4, 5)
        ],
        finals=[final],
        chosen=5,
        baselines={"gray copied to RGB": gray, "gray + mean training chroma": gray},
        semantic={
            "true_classifier_acc": 0.8,
            "gray_classifier_acc": 0.5,
            "classifier_acc": 0.8,
            "classifier_run_id": "clf",
        },
        gray_photos_psnr=20.0,
        parent_run_id="parent",
        wall_hours=1.5,
    )
    return Measured(**{**base, **changes})


def test_the_report_states_each_target_with_its_figure_without_training():
    text = render(_measured())
    # The gray copy scores 22.15 dB: the aim is 23.15 dB at colourfulness >= 0.7, classified as well as gray.
    assert (
        "**Met**: at colourfulness ≥ 0.7, a model ≥ 1 dB above the gray copy (≥ 23.15 dB) that the classifier "
        "recognises at least as well as the gray images (50.0%): the best front model that colourful and "
        "recognised so (trial 5, colourfulness 0.72) scores 24.00 dB (+0.85 dB against the aim) and is "
        "classified 55.0% (+5.0 points vs gray)."
    ) in text
    assert "The chosen model (trial 5; on validation, the best PSNR among the front models within 0.30" in text
    assert "**Met**: the most accurate model ≥ 23.8 dB: trial 5 scores 24.00 dB (+0.20 dB)." in text
    assert "**Met**: every front model above the gray copy in PSNR" in text
    assert "its images are classified 17% of the way from gray (50.0%) to true colour (80.0%)" in text
    assert "| trial 5: classification (rebalance 0.50), skips **(chosen)** | 12 | 0.004000 | 24.00 |" in text
    assert "least colourful relative to the truth are cat (0.50)" in text
    assert "T=1 gives 24.50 dB at colourfulness 0.40" in text
    assert "## Oracle bound: the chosen network given the true class\n\nNot measured in this run" in text
    assert "also takes the class" not in text
    # Classified worse than gray: the first aim is missed although the PSNR clears it.
    worse = render(
        _measured(
            semantic={
                "true_classifier_acc": 0.8,
                "gray_classifier_acc": 0.6,
                "classifier_acc": 0.8,
                "classifier_run_id": "clf",
            }
        )
    )
    assert "**Missed**: at colourfulness ≥ 0.7" in worse and "(-5.0 points vs gray)" in worse
    # A second vivid model that meets the aim although the best-PSNR one is classified worse: Met, with it.
    m = _measured(
        semantic={
            "true_classifier_acc": 0.8,
            "gray_classifier_acc": 0.6,
            "classifier_acc": 0.8,
            "classifier_run_id": "clf",
        }
    )
    other = dataclasses.replace(m.finals[0], trial=6, classifier_acc=0.65, test={**m.finals[0].test, "test_psnr": 23.5})
    text = render(dataclasses.replace(m, finals=[*m.finals, other]))
    assert "**Met**: at colourfulness ≥ 0.7" in text and "recognised so (trial 6, colourfulness 0.72)" in text
    # Not colourful enough: missed, with the most colourful model's figures.
    m = _measured()
    dull = dataclasses.replace(m.finals[0], test={**m.finals[0].test, "test_colourfulness": 0.4})
    text = render(dataclasses.replace(m, finals=[dull]))
    assert "no front model is that colourful on test (the most colourful, trial 5, reaches 0.40 at 24.00 dB)" in text


def test_the_oracle_bound_is_reported_beside_never_as_the_chosen_model():
    m = _measured()
    oracle = dataclasses.replace(
        m.finals[0],
        label="oracle",
        run_id="oracle-run",
        photos_psnr=float("nan"),
        test={**m.finals[0].test, "test_psnr": 24.6, "test_colourfulness": 0.8},
        classifier_acc=0.7,
    )
    text = render(dataclasses.replace(m, oracle=oracle))
    assert "| oracle: trial 5 given the true class (a bound) | 12 | 0.004000 | 24.60 |" in text
    assert "## Oracle bound: the chosen network given the true class" in text
    assert "knowing the object bought this network +0.60 dB on this data" in text
    assert "The PSNR part of the aim (≥ 23.15 dB at colourfulness ≥ 0.7) is within reach of the oracle" in text
    # An oracle that scores below the chosen model is not called an upper bound of +x dB.
    worse = dataclasses.replace(oracle, test={**oracle.test, "test_psnr": 23.9})
    text = render(dataclasses.replace(m, oracle=worse))
    assert "the true class bought this network nothing in PSNR (-0.10 dB)" in text and "worth" not in text
    assert "**(chosen)**" not in text.split("| oracle:")[1].split("\n")[0]


def test_early_points_are_in_the_space(source, tmp_path):
    cfg, _ = study_config(tmp_path)
    points = early_points(cfg)
    # Trial 0: the source with today's recipe (no skips); then the enqueued variants, all with skips.
    assert [p["params"]["model.skips"] for p in points] == [False, True, True, True]
    assert points[0]["attrs"]["recipe"] == "today's best recipe" and points[0]["params"]["train.loss"] == "mse"
    assert points[1]["params"]["train.loss"] == "classification" and "model.predict" not in points[1]["params"]
    assert points[2]["params"]["model.semantic"] == 128 and points[3]["params"]["train.loss"] == "mse"
    # The report names each recipe: the semantic branch is what tells trial 2 from trial 1.
    assert "skips, semantic branch 128 (class weight 0.30), width" in describe(points[2]["params"])
    assert "semantic" not in describe(points[1]["params"])


def test_a_finding_the_data_contradicts_is_not_written():
    from cae.colorize.render import shortcomings as variant_shortcomings
    from cae.colorize.search_render import shortcomings

    # One completed trial: too thin for any finding.
    thin = shortcomings(_measured(trials=_measured().trials[:1]))
    assert len(thin) == 1 and thin[0].startswith("Too thin to state findings: 1 completed trial(s)")
    # A regression model and a more colourful classification model that scores *higher*: the
    # "vivid colours cost PSNR" sentence would be false, so the cost is stated as nothing.
    m = _measured()
    regress = dataclasses.replace(m.finals[0], trial=3, temperature=None, test={**m.finals[0].test, "test_psnr": 23.0})
    text = " ".join(shortcomings(dataclasses.replace(m, finals=[*m.finals, regress])))
    assert "its vivid colours cost nothing (+1.00 dB)" in text and "wrong hues" not in text

    # colorize-best: a vivid gain that costs almost nothing means right hues, never "a wrong hue";
    # classes within 1.2× are even, with no story about sky and fur; colourful models are not "grey".
    row = {
        "test_psnr": 23.0,
        "test_colourfulness": 0.8,
        "luma_psnr": 60.0,
        "config": ExperimentConfig(),
        "per_class_mse": {"cat": 0.0050, "ship": 0.0055, "truck": 0.0052},
        "vivid": {"gain": 1.3, "test_psnr": 22.9, "test_colourfulness": 0.95},
    }
    base = {"gray copied to RGB": {"test_psnr": 22.2}, "gray + mean training chroma": {"test_psnr": 22.4}}
    text = " ".join(variant_shortcomings({"chroma": row}, base))
    assert "Errors are even across classes (chroma): 1.10× from cat to ship" in text
    assert "Tried here, with the numbers above: none of these." in text  # no `rgb` row: no chroma-vs-rgb claim
    assert "sky" not in text and "fur" not in text and "Desaturated" not in text
    assert "for -0.10 dB PSNR: the hues it predicts are mostly right, only too faint" in text
    costly = {
        **row,
        "test_colourfulness": 0.3,
        "vivid": {**row["vivid"], "test_psnr": 21.5},
        "per_class_mse": {"cat": 0.004, "ship": 0.008},
    }
    text = " ".join(variant_shortcomings({"chroma": costly}, base))
    assert "wrong often enough that saturating them costs PSNR" in text and "mostly right" not in text
    assert "Classes differ (chroma, test MSE): lowest on cat (0.0040)" in text and "2.0× from best to worst" in text
    assert "Desaturated predictions (colourfulness ratios `chroma` 0.30" in text
