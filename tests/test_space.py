from pathlib import Path

import optuna
import pytest
import yaml

from cae.config import ExperimentConfig, load_experiment
from cae.errors import CAEError
from cae.space import load_space

REPO = Path(__file__).resolve().parent.parent
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_sampled_values_stay_inside_the_declared_bounds(path):
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        values = space.sample_optuna(trial)
        assert set(values) == set(space.names)
        for p in space.params:
            assert p.contains(values[p.name]), (p.name, values[p.name])
        config = space.apply(ExperimentConfig(), values)  # every point is a valid config
        study.tell(trial, 0.0)
        assert config.model.depth == values.get("model.depth", config.model.depth)


def test_keras_tuner_reads_the_same_space_with_the_same_names():
    import keras_tuner

    space = load_space(REPO / "search_spaces/reconstruction.yaml")
    hp = keras_tuner.HyperParameters()
    values = space.sample_keras_tuner(hp)
    assert set(values) == set(space.names) == set(hp.values)
    lr = hp._hps["train.learning_rate"][0]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")


def test_the_reference_architecture_is_a_point_of_the_default_space():
    space = load_space(REPO / "search_spaces/reconstruction.yaml")
    reference = load_experiment(REPO / "experiments/reference.yaml")
    assert space.outside(reference) == []
    assert space.point(reference)["model.filters"] == 8


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model.depht": {"low": 1, "high": 3}}, "unknown key 'model.depht'"),
        ({"model.depth": {"low": 3, "high": 1}}, "model.depth: low (3) is greater than high (1)"),
        ({"train.batch_size": {"choices": []}}, "train.batch_size: choices must be a non-empty list"),
        ({"model.depth": {"low": 1.5, "high": 3}}, "model.depth.low must be an integer, got 1.5"),
        ({"model.downsample": {"choices": ["maxpool", "unpool"]}}, "model.downsample choice must be one of"),
        ({"model.activation": {"low": 1, "high": 2}}, "model.activation is not numeric"),
        ({"train.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
        ({"model.depth": {"low": 1, "hi": 3}}, "model.depth: unknown key 'hi'"),
        ({"model.depth": {"low": 1, "high": 6}}, "model.depth=6 would shrink the 32×32 image below 1×1"),
        ({"model.depth": 3}, "model.depth must be a mapping like {low: 1, high: 4}"),
    ],
)
def test_bad_space_files_fail_with_file_key_and_what_is_allowed(tmp_path, params, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"params": params}))
    with pytest.raises(CAEError) as err:
        load_space(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_space_file_needs_params(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("parameters: {}\n")
    with pytest.raises(CAEError, match="unknown key 'parameters'; allowed: params, description"):
        load_space(path)
