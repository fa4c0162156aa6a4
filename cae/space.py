"""Search spaces as data: ``search_spaces/*.yaml``, read once, used by Optuna and keras-tuner.

A space names config keys (the dotted keys of ``experiments/*.yaml``) and gives each a range or a
list of choices::

    params:
      model.depth: {low: 1, high: 3}                       # integers, because depth is an int
      train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {choices: [32, 64, 128, 256]}

The key's type in the config decides the parameter's type; values are checked against it on
load, so a typo or an impossible range fails before any trial runs. A parameter that only matters
for some values of an earlier one says so with ``if`` and is sampled only then (Optuna's
define-by-run, keras-tuner's conditional scopes)::

      train.rebalance: {low: 0.0, high: 1.0, if: {train.loss: [classification]}}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from cae.config import ExperimentConfig
from cae.config_files import read_yaml
from cae.errors import CAEError, quoted
from cae.schema import coerce, field_type, flatten, with_overrides

_SPEC_KEYS = {"low", "high", "step", "log", "choices", "if"}


@dataclass(frozen=True)
class Param:
    name: str  # a dotted config key, e.g. "model.filters"
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    # Sampled only when an earlier parameter has one of these values: (its name, the values).
    condition: tuple[str, tuple[Any, ...]] | None = None

    def active(self, values: dict[str, Any]) -> bool:
        return self.condition is None or values.get(self.condition[0]) in self.condition[1]

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        assert self.low is not None and self.high is not None  # ranges always have both
        if not self.low <= value <= self.high:
            return False
        return self.step is None or math.isclose((value - self.low) / self.step, round((value - self.low) / self.step))


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    path: str

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def conditional(self) -> bool:
        return any(p.condition for p in self.params)

    def point(self, config: ExperimentConfig) -> dict[str, Any]:
        """The values ``config`` has for the searched keys (e.g. the reference, for trial 0)."""
        flat = flatten(config)
        if flat["model.code_budget"] is None:  # latent given by channels: its size in values
            flat["model.code_budget"] = config.model.latent_channels() * config.model.latent_side() ** 2
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active(out):
                out[p.name] = flat[p.name]
        return out

    def outside(self, config: ExperimentConfig) -> list[str]:
        """Searched keys whose value in ``config`` is not a point of this space."""
        point = self.point(config)
        return [f"{p.name}={point[p.name]!r}" for p in self.params if p.name in point and not p.contains(point[p.name])]

    def holds(self, values: dict[str, Any]) -> bool:
        """Whether ``values`` (e.g. an earlier trial's parameters) is a point of this space."""
        active = [p for p in self.params if p.active(values)]
        return {p.name for p in active} == set(values) and all(p.contains(values[p.name]) for p in active)

    def apply(self, config: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
        return with_overrides(config, values, where=f"{self.path} (sampled values)")

    def sample_optuna(self, trial: Any) -> dict[str, Any]:
        """Sample every parameter through an ``optuna.Trial``."""
        out: dict[str, Any] = {}
        for p in self.params:
            if not p.active(out):
                continue
            if p.kind == "categorical":
                out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
            else:
                out[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return out

    def sample_keras_tuner(self, hp: Any) -> dict[str, Any]:
        """Sample every parameter through ``keras_tuner.HyperParameters`` (same names)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.condition is not None:
                with hp.conditional_scope(p.condition[0], list(p.condition[1])):
                    value = self._kt_value(hp, p)
                if p.active(out):
                    out[p.name] = value
            else:
                out[p.name] = self._kt_value(hp, p)
        return out

    @staticmethod
    def _kt_value(hp: Any, p: Param) -> Any:
        sampling = "log" if p.log else "linear"
        if p.kind == "categorical" and all(isinstance(c, bool) for c in p.choices):
            return hp.Boolean(p.name, default=p.choices[0])  # Choice would turn bools into 0/1
        if p.kind == "categorical":
            return hp.Choice(p.name, list(p.choices))
        if p.kind == "int":
            return hp.Int(p.name, int(p.low), int(p.high), step=int(p.step) if p.step else None, sampling=sampling)
        return hp.Float(p.name, p.low, p.high, step=p.step, sampling=sampling)


def _scalar_type(tp: Any) -> Any:
    if get_origin(tp) is Union or type(tp).__name__ == "UnionType":
        tp = next(a for a in get_args(tp) if a is not type(None))
    return tp


def _param(name: str, spec: Any, where: str) -> Param:
    try:
        tp = field_type(ExperimentConfig, name)
    except CAEError as err:
        raise CAEError(f"{where}: {err}") from None
    tp = _scalar_type(tp)
    if not isinstance(spec, dict) or not spec:
        raise CAEError(
            f"{where}: {name} must be a mapping like {{low: 1, high: 4}} or {{choices: [a, b]}}, got {quoted(spec)}"
        )
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise CAEError(
            f"{where}: {name}: unknown key {quoted(sorted(map(str, unknown))[0])}; "
            "allowed: choices, low, high, step, log, if"
        )
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise CAEError(f"{where}: {name}: 'choices' cannot be combined with low/high/step/log")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise CAEError(f"{where}: {name}: choices must be a non-empty list, got {quoted(choices)}")
        values = tuple(coerce(c, tp, f"{name} choice", where) for c in choices)
        if len(set(values)) != len(values):
            raise CAEError(f"{where}: {name}: choices repeat a value: {quoted(choices)}")
        return Param(name, "categorical", choices=values)
    if tp not in (int, float):
        raise CAEError(f"{where}: {name} is not numeric; give it choices: [...] instead of low/high")
    if "low" not in spec or "high" not in spec:
        raise CAEError(f"{where}: {name}: a range needs both low and high")
    # coerce refuses nan and inf: nan passes every comparison below, inf overflows the sampler
    low, high = (coerce(spec[k], tp, f"{name}.{k}", where) for k in ("low", "high"))
    step = coerce(spec["step"], tp, f"{name}.step", where) if "step" in spec else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise CAEError(f"{where}: {name}.log must be true or false, got {quoted(log)}")
    if low > high:
        raise CAEError(f"{where}: {name}: low ({low}) is greater than high ({high})")
    if not math.isfinite(high - low):  # a uniform draw scales by high - low
        raise CAEError(f"{where}: {name}: the range from {low} to {high} is too wide to sample; narrow it")
    if log and low <= 0:
        raise CAEError(f"{where}: {name}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise CAEError(f"{where}: {name}: use either log or step, not both")
    if step is not None and step <= 0:
        raise CAEError(f"{where}: {name}.step must be > 0, got {step}")
    return Param(name, "int" if tp is int else "float", low=low, high=high, step=step, log=log)


def _condition(name: str, spec: Any, earlier: dict[str, Param], where: str) -> tuple[str, tuple[Any, ...]]:
    """``if: {parent.key: [values]}``: the parent is an earlier categorical parameter of the space."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise CAEError(f"{where}: {name}.if must name one earlier parameter and its values, e.g. "
                       "{train.loss: [classification]}")  # fmt: skip
    ((parent, values),) = spec.items()
    if parent not in earlier or earlier[parent].kind != "categorical":
        raise CAEError(f"{where}: {name}.if: {quoted(parent)} is not a categorical parameter listed before {name}")
    values = values if isinstance(values, list) else [values]
    missing = [v for v in values if v not in earlier[parent].choices]
    if missing or not values:
        raise CAEError(f"{where}: {name}.if: {quoted(missing or values)} not among {parent}'s choices")
    return parent, tuple(values)


def _check_extremes(p: Param, where: str, experiment: ExperimentConfig) -> None:
    """Each extreme of a range (each choice) must be a valid value of its key in ``experiment`` (given
    the value of the parameter it is conditional on, if any: e.g. dense-only keys with a dense bottleneck)."""
    section, _, key = p.name.partition(".")
    given = {}
    if p.condition is not None and p.condition[0].partition(".")[0] == section:
        given = {p.condition[0].partition(".")[2]: p.condition[1][0]}
    base = getattr(experiment, section) if key else experiment
    for value in p.choices if p.kind == "categorical" else (p.low, p.high):
        try:
            with_overrides(base, {**given, key or p.name: value}, where=where)
        except CAEError as err:
            raise CAEError(f"{err} (from the range of {p.name})") from None


def load_space(path: str | Path, experiment: ExperimentConfig | None = None) -> SearchSpace:
    """The space at ``path``, each range checked against ``experiment`` (the study's base; default the defaults)."""
    where = str(path)
    data = read_yaml(path)
    unknown = set(data) - {"params", "description"}
    if unknown:
        raise CAEError(f"{where}: unknown key {quoted(sorted(map(str, unknown))[0])}; allowed: params, description")
    specs = data.get("params")
    if not isinstance(specs, dict) or not specs:
        raise CAEError(f"{where}: 'params' must map config keys to ranges or choices (none given)")
    params: dict[str, Param] = {}
    for name, spec in specs.items():
        # `if:` left empty must not make the parameter unconditional: it is checked like any condition
        conditional = isinstance(spec, dict) and "if" in spec
        condition = spec.pop("if") if conditional else None
        param = _param(name, spec, where)
        if conditional:
            param = dataclasses.replace(param, condition=_condition(name, condition, params, where))
        _check_extremes(param, where, experiment or ExperimentConfig())
        params[name] = param
    return SearchSpace(tuple(params.values()), where)
