import keras
import numpy as np
import pytest

from cae.colorize.from_best import colorize
from cae.colorize.scoring import baselines
from cae.colorize.variants import source_architecture, variant_config
from cae.config import ExperimentConfig
from cae.data import load_splits, luma, to_unit
from cae.errors import CAEError
from cae.schema import to_dict, with_overrides
from cae.search.best import export_trial, trial_record
from cae.tracking import Tracker
from cae.train import predict, train_and_evaluate


@pytest.fixture(scope="module")
def best_json(tracking_uri):
    """A best.json + best.keras written by the test (a 1-epoch reference on sample data)."""
    # A searched rate above the colorizer's cap, as in the main study (6.07e-3).
    config = with_overrides(
        ExperimentConfig(),
        {"data.source": "sample", "data.subset": 240, "train.epochs": 1, "train.learning_rate": 6e-3},
    )
    splits = load_splits("sample", config.seed, 240)
    result = train_and_evaluate(config, splits, evaluate_test=False)
    record = trial_record(
        "col",
        0,
        result,
        config,
        {"model.filters": 8},
        run_id="run-0",
        engine="optuna",
        data_source="sample",
        uid=None,
        objective=("best_val_loss", result.best_val_loss, "minimize"),
    )
    export_trial(record, result.model)
    return config


@pytest.mark.slow  # three variants trained and reported end to end
def test_colorization_end_to_end_with_lineage(best_json, tracking_uri):
    report = colorize(
        "col", variants=["rgb", "chroma", "seed"], overrides={"train.epochs": 1}, tracker=Tracker(tracking_uri)
    )
    text = report.read_text()
    assert "baseline: gray copied to RGB" in text and "`chroma`" in text and "Shortcomings" in text
    assert (report.parent / "colorization.png").stat().st_size > 1000
    client = Tracker(tracking_uri).client
    runs = client.search_runs([client.get_experiment_by_name("col-colorize-best").experiment_id])
    assert len(runs) == 3
    source = client.get_experiment_by_name("col")  # the source study's run list stays its own
    assert source is None or not client.search_runs([source.experiment_id], "tags.variant != ''")
    seed = next(r for r in runs if r.data.tags["variant"] == "seed")
    assert seed.data.params["train.loss"] == "bce" and seed.data.params["data.input"] == "mean"
    assert "`seed`: seed recipe" in text
    assert "(the search's 0.006 capped at 0.001" in text
    assert {float(r.data.params["train.learning_rate"]) for r in runs} == {1e-3}
    for run in runs:
        tags = run.data.tags
        assert tags["stage"] == "colorization"
        assert (tags["source_study"], tags["source_trial"], tags["source_run_id"]) == ("col", "0", "run-0")
        metrics = {"test_mse", "test_psnr", "test_ssim", "test_colourfulness", "test_hasler_cf", "luma_psnr"}
        assert metrics <= set(run.data.metrics)
        assert "reconstructions.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_shapes_and_the_chroma_variant_keeps_the_input_luma(best_json):
    splits = load_splits("sample", best_json.seed, 240)
    config = variant_config(best_json, "chroma", {"train.epochs": 1})
    result = train_and_evaluate(config, splits, evaluate_test=False)
    assert tuple(result.model.input.shape[1:]) == (32, 32, 1)
    assert tuple(result.model.output.shape[1:]) == (32, 32, 3)
    pred = predict(result.model, splits.x_test[:8], "luma")
    inside = ((pred > 0) & (pred < 1)).all(axis=-1)  # the decoder clips to [0, 1]; elsewhere luma is kept
    assert inside.mean() > 0.5
    np.testing.assert_allclose(luma(pred)[inside], luma(to_unit(splits.x_test[:8]))[inside], atol=1e-4)


def test_baselines_are_scored_like_the_models():
    splits = load_splits("sample", 0, 240)
    rows = baselines(splits)
    assert rows["gray copied to RGB"]["test_colourfulness"] == pytest.approx(0.0, abs=1e-6)
    assert rows["gray copied to RGB"]["test_hasler_cf"] == pytest.approx(0.0, abs=1e-6)
    assert 15 < rows["gray copied to RGB"]["test_psnr"] < 30


def test_missing_study_says_run_search_first():
    with pytest.raises(CAEError, match=r"no best trial exported for study 'nothing-here'.*run `make search"):
        colorize("nothing-here")


def test_chroma_gain_reaches_the_asked_colourfulness_and_keeps_luma():
    from cae.colorize.scoring import calibrate_gain, saturate
    from cae.metrics import colourfulness_ratio

    truth = to_unit(load_splits("sample", 0, 240).x_val)
    dull = saturate(truth, 0.4)
    assert colourfulness_ratio(dull, truth) == pytest.approx(0.4, abs=0.03)
    gain = calibrate_gain(dull, truth, 0.7)
    assert colourfulness_ratio(saturate(dull, gain), truth) == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(luma(saturate(dull, gain)), luma(dull), atol=0.02)  # only clipping moves luma


def test_a_collapsed_variant_is_named_and_gets_no_gain():
    from cae.colorize.render import shortcomings

    config = with_overrides(ExperimentConfig(), {"train.learning_rate": 6e-3})
    row = {"test_psnr": 22.5, "test_colourfulness": 0.01, "luma_psnr": 40.0, "per_class_mse": {"cat": 0.01}}
    row["config"] = config
    base = {"gray copied to RGB": {"test_psnr": 22.2}, "gray + mean training chroma": {"test_psnr": 22.4}}
    text = " ".join(shortcomings({"chroma": row}, base))
    assert "`chroma` collapsed to one colour for every pixel (colourfulness 0.01)" in text
    assert "learning rate 0.006" in text
    assert "diverged" not in text  # no curve, no claim


def test_a_variant_whose_training_loss_rose_is_said_to_have_diverged():
    from cae.colorize.render import shortcomings

    config = with_overrides(ExperimentConfig(), {"train.learning_rate": 1e-3})
    row = {"test_psnr": 10.7, "test_colourfulness": 2.8, "luma_psnr": 12.5, "per_class_mse": {"cat": 0.09}}
    base = {"gray copied to RGB": {"test_psnr": 22.3}, "gray + mean training chroma": {"test_psnr": 22.9}}
    rose = {**row, "config": config, "train_loss": [1.67, 3.86, 7.65]}
    text = " ".join(shortcomings({"seed": rose}, base))
    assert "`seed` diverged: its training loss rose from 1.67 to 7.65 over 3 epochs at learning rate 0.001" in text
    fell = {**rose, "train_loss": [1.67, 0.9, 0.7]}
    assert "diverged" not in " ".join(shortcomings({"seed": fell}, base))


def _exported(study: str, number: int, config: ExperimentConfig, value: float, uid: str = "u1") -> None:
    record = {
        "study": study,
        "trial_number": number,
        "engine": "optuna",
        "best_val_loss": value,
        "params": {},
        "config": to_dict(config),
        "n_params": 3,
        "latent_values": 1,
        "bottleneck_values": 1,
        "code_values": 1,
        "mlflow_run_id": f"run-{number}",
        "study_uid": uid,
        "objective": {"name": "best_val_loss", "value": value, "direction": "minimize"},
    }
    export_trial(record, keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_a_study_whose_best_has_a_dense_code_colorizes_that_best_rebuilt_for_gray():
    conv = with_overrides(ExperimentConfig(), {"model.filters": 12})
    hybrid = with_overrides(
        ExperimentConfig(),
        {"model.bottleneck": "dense", "model.code_budget": 256, "model.pca_init": True, "model.refine_layers": 3},
    )
    _exported("mixed", 1, conv, 0.004)
    _exported("mixed", 2, with_overrides(hybrid, {"model.code_drift": 0.01}), 0.001)  # the best
    config, lineage = source_architecture("mixed", None)
    assert (lineage["source_trial"], lineage["source_run_id"]) == (2, "run-2")  # the best, not a conv trial
    assert lineage["rebuilt"].startswith("for a 1-channel luma input")
    model = config.model  # its convolutions and code size kept; the code learned from gray (PCA's basis is RGB's)
    assert (model.bottleneck, model.code_budget, model.refine_layers) == ("dense", 256, 3)
    assert (model.pca_init, model.code_drift) == (False, 0.0)
    assert variant_config(config, "chroma", {}).data.input == "luma"
    with pytest.raises(CAEError, match=r"variant 'chroma-skips' needs a conv architecture .* use VARIANT=conv"):
        variant_config(config, "chroma-skips", {})
    assert variant_config(config, "conv", {}).model.bottleneck == "conv"  # today's conv recipe beside it


def test_the_report_describes_a_dense_source_as_the_hybrid_it_is():
    from cae.colorize.render import _architecture
    from cae.config import ExperimentConfig
    from cae.schema import with_overrides

    hybrid = with_overrides(
        ExperimentConfig(),
        {"model.bottleneck": "dense", "model.code_budget": 256, "model.encode_layers": 2, "model.refine_layers": 5},
    )
    assert _architecture(hybrid).startswith(
        "2 convolution layer(s) before a dense code of 256 values learned from gray"
    )
    assert "5 refinement layer(s) of 32 filters" in _architecture(hybrid)
    assert _architecture(ExperimentConfig()).startswith("depth ")
