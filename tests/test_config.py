from pathlib import Path

import pytest

from cae.config import ExperimentConfig, SearchConfig, load_experiment, load_search
from cae.errors import CAEError
from cae.schema import flatten, from_dict, parse_assignment, to_dict, with_overrides

REPO = Path(__file__).resolve().parent.parent


def test_reference_yaml_is_the_seed_architecture():
    cfg = load_experiment(REPO / "experiments/reference.yaml")
    assert cfg.model.level_filters() == (8, 12)
    assert cfg.model.latent_filters == 16 and cfg.model.depth == 2
    assert cfg.train.batch_size == 32 and cfg.train.learning_rate == 1e-3


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_file_loads(path):
    from cae.schema import read_yaml

    data = read_yaml(path)
    cfg = load_search(path) if "study" in data else load_experiment(path)
    assert to_dict(cfg)  # round-trips to plain data


def test_round_trip_and_flatten():
    cfg = with_overrides(ExperimentConfig(), {"model.depth": 3, "train.learning_rate": 3e-4})
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg
    flat = flatten(cfg)
    assert flat["model.depth"] == 3 and flat["train.learning_rate"] == 3e-4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modle": {}}, "unknown key 'modle'; allowed: name, seed, data, model, train"),
        ({"model": {"filtres": 8}}, "unknown key 'model.filtres'"),
        ({"model": {"depth": "two"}}, "model.depth must be an integer, got 'two'"),
        ({"model": {"depth": 6}}, "model.depth=6 would shrink the 32×32 image below 1×1"),
        ({"model": {"filters": 0}}, "model.filters must be a positive integer"),
        ({"model": {"activation": "sigmoidal"}}, "model.activation must be one of 'relu'"),
        ({"model": {"batch_norm": "yes"}}, "model.batch_norm must be true or false"),
        ({"train": {"learning_rate": -1.0}}, "train.learning_rate must be > 0"),
        ({"data": {"subset": 4}}, "data.subset must be at least 8"),
    ],
)
def test_bad_experiment_values_fail_with_the_key(tmp_path, data, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CAEError) as err:
        load_experiment(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  depth: [1, 2\n")
    with pytest.raises(CAEError, match=r"broken.yaml: line \d+"):
        load_experiment(path)


def test_overrides_parse_yaml_scalars_and_validate():
    assert parse_assignment("train.learning_rate=1e-4") == ("train.learning_rate", 1e-4)
    assert parse_assignment("model.batch_norm=true") == ("model.batch_norm", True)
    with pytest.raises(CAEError, match=r"unknown key 'train\.epoch'"):
        with_overrides(ExperimentConfig(), {"train.epoch": 3})
    with pytest.raises(CAEError, match="KEY=VALUE"):
        parse_assignment("epochs")


def test_search_config_validation():
    cfg = load_search(REPO / "experiments/search.yaml", {"trials": 3, "experiment.train.epochs": 1})
    assert cfg.trials == 3 and cfg.experiment.train.epochs == 1
    with pytest.raises(CAEError, match="objectives of a reconstruction study must start with best_val_loss"):
        from_dict(SearchConfig, {"objectives": ["code_values"]})
    with pytest.raises(CAEError, match=r"unknown key 'pruner\.warmup'"):
        from_dict(SearchConfig, {"pruner": {"warmup": 2}})
