"""cae.config and cae.schema: defaults once, YAML → frozen dataclasses, one-line errors; every shipped file builds."""

import re
from pathlib import Path

import pytest
import yaml

from cae.config import ExperimentConfig, ModelConfig, TrainConfig, load_experiment
from cae.config_files import parse_assignment, read_yaml
from cae.errors import CAEError
from cae.schema import field_type, flatten, from_dict, to_dict, with_overrides
from cae.search_config import SearchConfig, load_search

from .conftest import one_line_error

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


def test_reference_yaml_is_the_seed_architecture():
    cfg = load_experiment(REPO / "experiments/reference.yaml")
    assert cfg.model.level_filters() == (8, 12)
    assert cfg.model.latent_filters == 16 and cfg.model.depth == 2
    assert cfg.train.batch_size == 32 and cfg.train.learning_rate == 1e-3
    assert cfg == ExperimentConfig()  # it restates the defaults: they are the seed architecture


def shipped_experiment(path: Path) -> ExperimentConfig:
    """What a shipped file trains: an experiment, a search's shared experiment, or a colorization base.

    A colorization search's ``experiment:`` block changes the source study's best architecture
    (cae.colorize.search.colorization_config); here the source is the reference architecture.
    """
    data = read_yaml(path)
    if "experiment" not in data and "space" not in data:
        return load_experiment(path)
    if data.get("objectives", ["best_val_loss"])[0] == "best_val_loss":
        return load_search(path).experiment
    from cae.colorize.search import colorization_config

    cfg, _ = colorization_config(path, "reference", {}, source=(ExperimentConfig(), {}))
    assert cfg.stage == "colorization" and cfg.objectives[0] == "val_psnr" and cfg.study == "reference-colorize"
    return cfg.experiment


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_file_loads_and_builds_its_model(path, sample_splits):
    from cae.model import code_sizes
    from cae.train import build_model

    config = shipped_experiment(path)
    model = build_model(config, sample_splits)  # a PCA code is fitted on the split's training images
    assert tuple(model.input.shape[1:]) == (32, 32, config.data.input_channels)
    assert tuple(model.output.shape[1:]) == (32, 32, 3)
    assert code_sizes(model)[0] == config.model.code_values()
    assert from_dict(ExperimentConfig, to_dict(config)) == config  # what MLflow and best.json store reads back


def test_the_colorization_file_changes_the_source_instead_of_replacing_it():
    config = shipped_experiment(REPO / "experiments/colorize-search.yaml")
    assert config.model.depth == ModelConfig().depth and config.model.filters == ModelConfig().filters
    assert config.data.input == "luma" and config.model.predict == "chroma"  # the recipe of trial 0
    assert config.train.epochs == read_yaml(REPO / "experiments/colorize-search.yaml")["experiment"]["train"]["epochs"]


def test_round_trip_and_flatten():
    cfg = with_overrides(ExperimentConfig(), {"model.depth": 3, "train.learning_rate": 3e-4})
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg
    flat = flatten(cfg)
    assert flat["model.depth"] == 3 and flat["train.learning_rate"] == 3e-4
    assert set(flat) == {f"{section}.{k}" for section in ("data", "model", "train")
                         for k in to_dict(cfg)[section]} | {"name", "seed"}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modle": {}}, "unknown key 'modle'; did you mean model?"),
        ({"model": {"filtres": 8}}, "unknown key 'model.filtres'"),
        ({"model": {"depth": "two"}}, "model.depth must be an integer, got 'two'"),
        ({"model": {"depth": 6}}, "model.depth=6 would shrink the 32×32 image below 1×1"),
        ({"model": {"filters": 0}}, "model.filters must be a positive integer"),
        ({"model": {"activation": "sigmoidal"}}, "model.activation must be one of 'relu'"),
        ({"model": {"downsample": "maxpol"}}, "model.downsample must be one of 'maxpool', 'avgpool', 'stride'"),
        ({"model": {"batch_norm": "yes"}}, "model.batch_norm must be true or false"),
        ({"model": {"code_budget": 0}}, "model.code_budget must be a positive integer or null"),
        ({"model": {"width_multiplier": 0}}, "model.width_multiplier must be > 0"),
        ({"train": {"learning_rate": -1.0}}, "train.learning_rate must be > 0"),
        ({"train": {"rebalance": 2}}, "train.rebalance must be between 0 and 1, got 2"),
        ({"train": {"precision": "fp8"}}, "train.precision must be one of 'float32'"),
        ({"train": {"loss": "classification"}}, "train.loss: classification classifies chroma"),
        ({"data": {"subset": 4}}, "data.subset must be at least 8"),
        # nan passes `> 0`, inf passed it too and overflowed mid-run: a number must be finite
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate must be a finite number, got inf"),
        ({"train": {"learning_rate": float("nan")}}, "train.learning_rate must be a finite number, got nan"),
        ({"train": {"rebalance": float("-inf")}}, "train.rebalance must be a finite number, got -inf"),
        ({"train": {"learning_rate": 10**400}}, "train.learning_rate must be a finite number, got <an integer of"),
        ({"seed": 10**400}, "seed must be an integer from -2**63 to 2**63 - 1, got <an integer of about 400 digits>"),
        ({"train": {"epochs": None}}, "train.epochs must be an integer, got an empty value"),
        ({"train": None}, "train is empty; give it keys (allowed: epochs, batch_size"),  # not "the defaults"
    ],
)
def test_bad_experiment_values_fail_with_the_key(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CAEError) as err:
        load_experiment(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ModelConfig(downsample="bad"), "model.downsample must be one of 'maxpool', 'avgpool', 'stride', got 'bad'"),
        (ModelConfig(upsample="nearest"), "model.upsample must be one of 'upsampling'"),
        (ModelConfig(predict=True), "model.predict must be one of 'rgb', 'chroma', got True"),  # a bool is no choice
        (TrainConfig(lr_schedule="step"), "train.lr_schedule must be one of 'constant', 'cosine', 'plateau'"),
    ],
    ids=["downsample", "upsample", "bool", "schedule"],
)
def test_configs_built_in_code_are_checked_like_loaded_ones(config, message):
    """A dataclass constructed directly never passed from_dict: validate() must still refuse the mode."""
    with pytest.raises(CAEError, match=message.replace("(", r"\(")):
        config.validate()


def test_width_multiplier_scales_every_level_but_not_the_latent():
    wide = ModelConfig(width_multiplier=2.0)
    assert wide.level_filters() == (16, 24)
    assert ModelConfig(width_multiplier=0.5).level_filters() == (4, 6)
    assert ModelConfig(filters=2, width_multiplier=0.1).level_filters() == (1, 1)  # never a level of 0 filters
    assert wide.latent_channels() == ModelConfig().latent_channels() == 16


@pytest.mark.parametrize(("depth", "channels"), [(1, 3), (2, 12), (3, 50), (4, 200)])
def test_code_budget_is_the_latent_in_values_at_each_depth(depth, channels):
    cfg = ModelConfig(depth=depth, code_budget=800, latent_filters=5)
    assert cfg.latent_channels() == channels  # 800 // side², latent_filters ignored
    assert cfg.latent_channels() * cfg.latent_side() ** 2 <= 800


def test_overrides_parse_yaml_scalars_and_validate():
    assert parse_assignment("train.learning_rate=1e-4") == ("train.learning_rate", 1e-4)
    assert parse_assignment("model.batch_norm=true") == ("model.batch_norm", True)
    assert parse_assignment("data.subset=") == ("data.subset", None)
    with pytest.raises(CAEError, match=r"unknown key 'train\.epoch'"):
        with_overrides(ExperimentConfig(), {"train.epoch": 3})
    with pytest.raises(CAEError, match="KEY=VALUE"):
        parse_assignment("epochs")


def test_field_type_follows_dotted_keys():
    assert field_type(ExperimentConfig, "model.depth") is int
    assert field_type(SearchConfig, "experiment.train.learning_rate") is float
    with pytest.raises(CAEError, match=r"unknown key 'model\.dpth'; did you mean model\.depth\?"):
        field_type(ExperimentConfig, "model.dpth")


def test_search_config_validation():
    cfg = load_search(REPO / "experiments/search.yaml", {"trials": 3, "experiment.train.epochs": 1})
    assert cfg.trials == 3 and cfg.experiment.train.epochs == 1
    assert cfg.directions == ["minimize"]
    assert from_dict(SearchConfig, {"objectives": ["best_val_loss", "code_values"]}).directions == ["minimize"] * 2
    with pytest.raises(CAEError, match="objectives of a reconstruction study must start with best_val_loss"):
        from_dict(SearchConfig, {"objectives": ["code_values"]})
    with pytest.raises(CAEError, match="objectives of a colorization study must start with val_psnr"):
        from_dict(SearchConfig, {"stage": "colorization"})
    with pytest.raises(CAEError, match=r"unknown key 'pruner\.warmup'"):
        from_dict(SearchConfig, {"pruner": {"warmup": 2}})
    with pytest.raises(CAEError, match=r"study name .* is not a plain name"):
        from_dict(SearchConfig, {"study": "../elsewhere"})


def alias_bomb(levels: int, width: int = 10) -> str:
    """A "billion laughs" YAML flow list, a few hundred bytes: its last item expands to ``width ** levels`` items."""
    items = [f"&a0 [{', '.join(['1'] * width)}]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def test_an_alias_bomb_as_a_typed_value_is_quoted_by_a_short_prefix(tmp_path):
    """A real file: the value expands to 10**6 items (10**9 with 9 levels), never formatted whole."""
    path = tmp_path / "bomb.yaml"
    path.write_text(f"train:\n  epochs: {alias_bomb(6)}\n")
    assert path.stat().st_size < 1000
    message = one_line_error(path, load_experiment)
    assert "train.epochs must be an integer, got [[1, 1, 1, 1, 1, ...], [[1, 1" in message and message.endswith("…")


def test_an_alias_bomb_in_a_search_space_is_quoted_by_a_short_prefix(tmp_path):
    from cae.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(f"params:\n  model.depth:\n    choices: [{alias_bomb(6)}]\n")  # one choice: the bomb
    assert "model.depth choice must be an integer, got [[1, 1, 1, 1, 1, ...], [[1" in one_line_error(path, load_space)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train: {epochs: '" + "9" * 500_000 + "'}\n", r"train\.epochs must be an integer, got '9{80}'…$"),
        # an explicit key (`? key`): PyYAML reads a plain one of at most 1,024 characters
        ("? " + "x" * 300_000 + "\n: 1\n", r"unknown key 'x{80}'…; allowed: "),
        ("seed: " + "7" * 5000 + "\n", r"a value cannot be read: Exceeds the limit"),
    ],
    ids=["long string value", "long key", "integer over Python's digit limit"],
)
def test_a_huge_value_is_quoted_by_a_short_prefix(tmp_path, text, expected):
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    assert re.search(expected, one_line_error(path, load_experiment))


def test_a_dense_code_colorizes_from_gray_with_a_learned_code_not_pcas():
    from cae.config import ExperimentConfig
    from cae.errors import CAEError
    from cae.schema import with_overrides

    dense = {"model.bottleneck": "dense", "model.code_budget": 256, "model.pca_init": True}
    with_overrides(ExperimentConfig(), dense)  # a reconstruction code: fine
    gray = {"data.input": "luma", "model.predict": "chroma"}
    with pytest.raises(CAEError, match=r"model.pca_init needs data.input: rgb \(PCA's basis is RGB's\)"):
        with_overrides(ExperimentConfig(), {**dense, **gray})
    with_overrides(ExperimentConfig(), {**dense, **gray, "model.pca_init": False})  # the code learned from gray
    with pytest.raises(CAEError, match=r"train\.loss: classification needs model\.bottleneck: conv"):
        with_overrides(ExperimentConfig(), {**dense, **gray, "model.pca_init": False, "train.loss": "classification"})


# ---- strict files and overrides: duplicate keys, non-finite and empty values, what a file is ----


def test_a_duplicate_key_is_refused_in_a_search_file_and_in_an_override(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("trials: 3\nexperiment:\n  train: {epochs: 1, epochs: 2}\n")
    assert "line 3: duplicate key 'epochs'" in one_line_error(path, load_search)
    with pytest.raises(CAEError, match=r"^--set train: cannot read .* duplicate key 'epochs'"):
        parse_assignment("train={epochs: 1, epochs: 2}")


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train=", "override: train is a section, not a value: set its keys instead, e.g. train.epochs=... (allowed:"),
        ("train=5", "override: train is a section, not a value"),
        ("train={}", "train is a section, not a value: set its keys instead"),
        ("train.epochs=", "override: train.epochs must be an integer, got an empty value"),
        ("train.learning_rate=.inf", "override: train.learning_rate must be a finite number, got inf"),
        ("train.learning_rate=.nan", "override: train.learning_rate must be a finite number, got nan"),
        ("seed=" + "9" * 400, "override: seed must be an integer from -2**63 to 2**63 - 1, got <an integer of about"),
    ],
)
def test_an_override_of_a_section_an_empty_or_out_of_range_value_is_refused(assignment, message):
    """``--set train=`` used to reset every training key to its default without a word."""
    with pytest.raises(CAEError) as err:
        load_experiment(REPO / "experiments/conv-best.yaml", dict([parse_assignment(assignment)]))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("experiment.train=", "override: experiment.train is a section, not a value"),
        ("experiment=", "override: experiment is a section, not a value"),
        ("experiment.train.epochs=", "override: experiment.train.epochs must be an integer, got an empty value"),
        ("pruner=hyperband", "override: pruner is a section, not a value: set its keys instead, e.g. pruner.name="),
    ],
)
def test_a_search_override_of_a_section_or_an_empty_value_is_refused(assignment, message):
    with pytest.raises(CAEError) as err:
        load_search(REPO / "experiments/search.yaml", dict([parse_assignment(assignment)]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_section_given_a_mapping_changes_only_the_keys_it_names():
    base = load_experiment(REPO / "experiments/conv-best.yaml")
    changed = with_overrides(base, {"train": {"epochs": 3}})
    assert changed.train.epochs == 3 and changed.train.learning_rate == base.train.learning_rate
    assert changed == with_overrides(base, {"train.epochs": 3})
    with pytest.raises(CAEError, match=r"unknown key 'train\.epoch'"):
        with_overrides(base, {"train": {"epoch": 3}})


def test_a_search_names_its_strategy_as_the_replay_does():
    assert SearchConfig().strategy == "tpe+hyperband"
    cfg = load_search("experiments/search.yaml")
    assert cfg.strategy == f"{cfg.sampler.name}+{cfg.pruner.name}+prior"  # its enqueued point runs first
