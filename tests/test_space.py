"""cae.space: search spaces as data, one parser for Optuna and keras-tuner, conditional parameters."""

from pathlib import Path

import optuna
import pytest
import yaml

from cae.config import ExperimentConfig, load_experiment
from cae.errors import CAEError
from cae.schema import with_overrides
from cae.search_config import load_search
from cae.space import load_space

REPO = Path(__file__).resolve().parent.parent
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
# What each space's points are applied to: the colorization space searches around a luma-input model,
# the default space around its study's PCA-code model (experiments/search.yaml).
COLOUR_BASE = {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse"}


def base_for(path: Path) -> ExperimentConfig:
    if path.stem == "reconstruction":
        return load_search(REPO / "experiments/search.yaml").experiment
    if path.stem == "colorization-hybrid":  # the default study's dense code, rebuilt for gray
        dense = {"model.bottleneck": "dense", "model.code_budget": 256}
        return with_overrides(ExperimentConfig(), {**COLOUR_BASE, **dense})
    return with_overrides(ExperimentConfig(), COLOUR_BASE if path.stem == "colorization" else {})


def random_points(space, n: int, seed: int = 0):
    """``n`` points drawn by Optuna's RandomSampler on a throwaway in-memory study: (values, trial)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        values = space.sample_optuna(trial)
        study.tell(trial, 0.0)
        yield values, study.trials[-1]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_sampled_points_are_inside_the_space_and_read_back_from_the_config(path):
    base = base_for(path)
    space = load_space(path, base)
    for values, trial in random_points(space, 60):
        assert set(values) == {p.name for p in space.params if p.active(values)}
        assert trial.params == values  # Optuna records exactly the sampled names, nothing inactive
        for p in space.params:
            assert p.name not in values or p.contains(values[p.name]), (p.name, values[p.name])
        config = space.apply(base, values)  # every point is a valid config ...
        assert space.point(config) == values  # ... that holds exactly the sampled values
        assert space.outside(config) == []


@pytest.mark.parametrize("search", ["pareto.yaml"])
def test_the_space_never_draws_a_code_over_the_studys_budget(search):
    """Spaces sample model.code_budget, so no draw is wasted on a code the objective would skip."""
    from cae.model import build_from_config, code_sizes

    cfg = load_search(REPO / "experiments" / search)
    space = load_space(REPO / cfg.space, cfg.experiment)
    assert "model.code_budget" in space.names and cfg.max_code_values is not None
    latents = []
    for i, (values, _) in enumerate(random_points(space, 200)):
        model_cfg = space.apply(cfg.experiment, values).model
        latent = model_cfg.code_values()  # arithmetic: 200 builds take minutes
        if i < 4:  # ... checked against the built model on a few points
            assert code_sizes(build_from_config(model_cfg))[0] == latent
        latents.append(latent)
    # The code the objective compares is min(latent, bottleneck) <= latent.
    assert max(latents) <= cfg.max_code_values
    assert len(set(latents)) > 10  # the draws spread over the budget range, not one value


@pytest.mark.parametrize("search", ["search.yaml", "search-conv.yaml"])
def test_a_one_size_study_draws_only_its_code_size(search):
    """A reconstruction study compares one code size: no draw of its space may change it."""
    cfg = load_search(REPO / "experiments" / search)
    space = load_space(REPO / cfg.space, cfg.experiment)
    assert cfg.code_values is not None and "model.code_budget" not in space.names
    sizes = {space.apply(cfg.experiment, values).model.code_values() for values, _ in random_points(space, 100)}
    assert sizes == {cfg.code_values}


def test_keras_tuner_reads_the_same_space_with_the_same_names():
    import keras_tuner

    space = load_space(REPO / "search_spaces/pareto.yaml")  # the space with both families
    seen: set[str] = set()
    for family in ("conv", "dense"):
        hp = keras_tuner.HyperParameters()
        hp.Fixed("model.bottleneck", family)  # each family's conditional keys in turn
        values = space.sample_keras_tuner(hp)
        assert values["model.bottleneck"] == family
        active = {p.name for p in space.params if p.active(values)}
        assert set(values) == active == {k for k in hp.values if hp.is_active(k)}
        seen |= set(values)
    assert seen == set(space.names)  # between them the two families sample every key
    lr = hp._hps["train.learning_rate"][0]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")


def test_the_reference_is_a_point_that_rebuilds_the_reference():
    """Trial 0 is the reference's point, applied to the study's base: it must be the reference again."""
    from cae.model import build_from_config, code_sizes

    space = load_space(REPO / "search_spaces/pareto.yaml")  # the space that samples the code size
    reference = load_experiment(REPO / "experiments/reference.yaml")
    assert space.outside(reference) == []
    point = space.point(reference)
    assert point["model.code_budget"] == 1024  # the latent's 8×8×16 in values, as the space samples it
    elsewhere = with_overrides(ExperimentConfig(), {"model.depth": 3, "model.filters": 32, "model.batch_norm": True})
    model = build_from_config(space.apply(elsewhere, point).model)
    assert model.count_params() == 4911 and code_sizes(model) == (1024, 768)


# ---- conditional parameters (`if:`) ----------------------------------------------------------


def test_conditional_parameters_are_sampled_only_when_their_condition_holds():
    space = load_space(REPO / "search_spaces/colorization.yaml")
    assert space.conditional
    seen = set()
    for values, _ in random_points(space, 80):
        loss = values["train.loss"]
        seen.add(loss)
        assert ("train.rebalance" in values) == (loss == "classification")
        assert ("model.predict" in values) == (loss in ("mse", "l1", "huber"))
    assert seen == {"mse", "l1", "huber", "classification"}  # both branches were exercised


def test_point_skips_inactive_parameters():
    space = load_space(REPO / "search_spaces/colorization.yaml")
    regression = with_overrides(ExperimentConfig(), COLOUR_BASE)
    assert "model.predict" in space.point(regression) and "train.rebalance" not in space.point(regression)
    classes = with_overrides(regression, {"train.loss": "classification", "train.rebalance": 0.25})
    point = space.point(classes)
    assert point["train.rebalance"] == 0.25 and "model.predict" not in point


def test_keras_tuner_sees_conditional_parameters_in_conditional_scopes():
    import keras_tuner

    space = load_space(REPO / "search_spaces/colorization.yaml")
    hp = keras_tuner.HyperParameters()
    values = space.sample_keras_tuner(hp)
    assert values["train.loss"] == "mse"  # keras-tuner's default: the first choice
    assert "model.predict" in values and "train.rebalance" not in values
    assert "train.rebalance" in hp._hps  # declared (in its scope) so a later trial can sample it


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"train.rebalance": {"low": 0.0, "high": 1.0, "if": {"train.loss": ["classification"]}},
             "train.loss": {"choices": ["mse", "classification"]}},
            "train.rebalance.if: 'train.loss' is not a categorical parameter listed before train.rebalance",
        ),
        (
            {"train.learning_rate": {"low": 1.0e-4, "high": 1.0e-2},
             "train.rebalance": {"low": 0.0, "high": 1.0, "if": {"train.learning_rate": [1.0e-3]}}},
            "train.rebalance.if: 'train.learning_rate' is not a categorical parameter",
        ),
        (
            {"train.loss": {"choices": ["mse", "l1"]},
             "train.rebalance": {"low": 0.0, "high": 1.0, "if": {"train.loss": ["classification"]}}},
            "train.rebalance.if: ['classification'] not among train.loss's choices",
        ),
        (
            {"train.loss": {"choices": ["mse", "l1"]}, "model.skips": {"choices": [False, True]},
             "train.rebalance": {"low": 0.0, "high": 1.0, "if": {"train.loss": ["mse"], "model.skips": [True]}}},
            "train.rebalance.if must name one earlier parameter and its values",
        ),
    ],
    ids=["parent listed later", "numeric parent", "value not a choice", "two parents"],
)  # fmt: skip
def test_bad_conditions_fail_with_file_and_key(tmp_path, params, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"params": params}, sort_keys=False))
    with pytest.raises(CAEError) as err:
        load_space(path)
    assert message in str(err.value) and str(path) in str(err.value)


# ---- bad space files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model.depht": {"low": 1, "high": 3}}, "unknown key 'model.depht'"),
        ({"model.depth": {"low": 3, "high": 1}}, "model.depth: low (3) is greater than high (1)"),
        ({"train.batch_size": {"choices": []}}, "train.batch_size: choices must be a non-empty list"),
        ({"train.batch_size": {"choices": [32, 32]}}, "train.batch_size: choices repeat a value"),
        ({"model.depth": {"low": 1.5, "high": 3}}, "model.depth.low must be an integer, got 1.5"),
        ({"model.downsample": {"choices": ["maxpool", "unpool"]}}, "model.downsample choice must be one of"),
        ({"model.activation": {"low": 1, "high": 2}}, "model.activation is not numeric"),
        ({"train.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
        ({"train.learning_rate": {"low": 0.1, "high": 0.2, "log": True, "step": 0.05}}, "use either log or step"),
        ({"model.depth": {"low": 1, "hi": 3}}, "model.depth: unknown key 'hi'"),
        ({"model.depth": {"low": 1, "high": 6}}, "model.depth=6 would shrink the 32×32 image below 1×1"),
        ({"model.depth": 3}, "model.depth must be a mapping like {low: 1, high: 4}"),
        # non-finite numbers passed every check here, then failed every trial with an OverflowError
        ({"train.learning_rate": {"low": 1e-4, "high": float("inf")}}, "train.learning_rate.high must be a finite"),
        ({"train.learning_rate": {"low": 1e-4, "high": float("nan")}}, "train.learning_rate.high must be a finite"),
        ({"train.rebalance": {"low": float("-inf"), "high": 1.0}}, "train.rebalance.low must be a finite number"),
        ({"train.rebalance": {"low": float("nan"), "high": 1.0}}, "train.rebalance.low must be a finite number"),
        ({"train.rebalance": {"low": 0.0, "high": 1.0, "step": float("nan")}}, "train.rebalance.step must be a finite"),
        ({"train.learning_rate": {"choices": [1e-3, float("inf")]}}, "train.learning_rate choice must be a finite"),
        ({"model.depth": {"low": 1, "high": float("inf")}}, "model.depth.high must be an integer, got inf"),
        ({"model.filters": {"low": 1, "high": 10**400}}, "model.filters.high must be an integer from -2**63 to 2**63"),
        ({"model.depth": {"low": 1, "high": 3, "step": None}}, "model.depth.step must be an integer, got an empty"),
        ({"train.rebalance": {"low": 0.0, "high": 1.0, "if": None}}, "train.rebalance.if must name one earlier"),
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


def test_a_parameter_given_twice_is_refused_with_its_line(tmp_path):
    """YAML keeps the second entry silently: the study would search a range the reader of the first never sees."""
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  model.depth: {low: 1, high: 3}\n  model.depth: {low: 1, high: 2}\n")
    with pytest.raises(CAEError) as err:
        load_space(path)
    assert str(err.value).startswith(f"{path}: line 3: duplicate key 'model.depth' (first on line 2)")
    path.write_text("params:\n  model.depth: {low: 1, high: 3, low: 2}\n")
    with pytest.raises(CAEError, match="line 2: duplicate key 'low'"):
        load_space(path)


def test_a_range_too_wide_to_sample_is_refused(tmp_path):
    """Each bound is finite but high - low is not: a uniform draw would be inf or nan."""
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  train.rebalance: {low: -1.0e+308, high: 1.0e+308}\n")
    with pytest.raises(CAEError, match=r"train\.rebalance: the range from -1e\+308 to 1e\+308 is too wide to sample"):
        load_space(path)
