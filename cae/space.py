"""Search spaces as data: ``search_spaces/*.yaml``, read once, used by Optuna and keras-tuner.

A space names config keys (the dotted keys of ``experiments/*.yaml``) and gives each a range or a
list of choices::

    params:
      model.depth: {low: 1, high: 3}                       # integers, because depth is an int
      train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {choices: [32, 64, 128, 256]}

The key's type in the config decides the parameter's type; values are checked against it on
load, so a typo or an impossible range fails before any trial runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from cae.config import ExperimentConfig, coerce, field_type, flatten, read_yaml, with_overrides
from cae.errors import CAEError

_SPEC_KEYS = {"low", "high", "step", "log", "choices"}


@dataclass(frozen=True)
class Param:
    name: str  # a dotted config key, e.g. "model.filters"
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

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

    def point(self, config: ExperimentConfig) -> dict[str, Any]:
        """The values ``config`` has for the searched keys (e.g. the reference, for trial 0)."""
        flat = flatten(config)
        return {name: flat[name] for name in self.names}

    def outside(self, config: ExperimentConfig) -> list[str]:
        """Searched keys whose value in ``config`` is not a point of this space."""
        point = self.point(config)
        return [f"{p.name}={point[p.name]!r}" for p in self.params if not p.contains(point[p.name])]

    def apply(self, config: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
        return with_overrides(config, values, where=f"{self.path} (sampled values)")

    def sample_optuna(self, trial: Any) -> dict[str, Any]:
        """Sample every parameter through an ``optuna.Trial``."""
        out: dict[str, Any] = {}
        for p in self.params:
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
            sampling = "log" if p.log else "linear"
            if p.kind == "categorical" and all(isinstance(c, bool) for c in p.choices):
                out[p.name] = hp.Boolean(p.name, default=p.choices[0])  # Choice would turn bools into 0/1
            elif p.kind == "categorical":
                out[p.name] = hp.Choice(p.name, list(p.choices))
            elif p.kind == "int":
                out[p.name] = hp.Int(
                    p.name, int(p.low), int(p.high), step=int(p.step) if p.step else None, sampling=sampling
                )
            else:
                out[p.name] = hp.Float(p.name, p.low, p.high, step=p.step, sampling=sampling)
        return out


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
            f"{where}: {name} must be a mapping like {{low: 1, high: 4}} or {{choices: [a, b]}}, got {spec!r}"
        )
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise CAEError(f"{where}: {name}: unknown key '{sorted(unknown)[0]}'; allowed: choices, low, high, step, log")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise CAEError(f"{where}: {name}: 'choices' cannot be combined with low/high/step/log")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise CAEError(f"{where}: {name}: choices must be a non-empty list, got {choices!r}")
        values = tuple(coerce(c, tp, f"{name} choice", where) for c in choices)
        if len(set(values)) != len(values):
            raise CAEError(f"{where}: {name}: choices repeat a value: {choices!r}")
        return Param(name, "categorical", choices=values)
    if tp not in (int, float):
        raise CAEError(f"{where}: {name} is not numeric; give it choices: [...] instead of low/high")
    if "low" not in spec or "high" not in spec:
        raise CAEError(f"{where}: {name}: a range needs both low and high")
    low, high = (coerce(spec[k], tp, f"{name}.{k}", where) for k in ("low", "high"))
    step = coerce(spec["step"], tp, f"{name}.step", where) if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise CAEError(f"{where}: {name}.log must be true or false, got {log!r}")
    if low > high:
        raise CAEError(f"{where}: {name}: low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise CAEError(f"{where}: {name}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise CAEError(f"{where}: {name}: use either log or step, not both")
    if step is not None and step <= 0:
        raise CAEError(f"{where}: {name}.step must be > 0, got {step}")
    return Param(name, "int" if tp is int else "float", low=low, high=high, step=step, log=log)


def load_space(path: str | Path) -> SearchSpace:
    where = str(path)
    data = read_yaml(path)
    unknown = set(data) - {"params", "description"}
    if unknown:
        raise CAEError(f"{where}: unknown key '{sorted(unknown)[0]}'; allowed: params, description")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise CAEError(f"{where}: 'params' must map config keys to ranges or choices (none given)")
    space = SearchSpace(tuple(_param(name, spec, where) for name, spec in params.items()), where)
    # Extremes of the space must build valid models (e.g. depth that keeps the image >= 1×1).
    for p in space.params:
        for value in p.choices if p.kind == "categorical" else (p.low, p.high):
            try:
                with_overrides(ExperimentConfig(), {p.name: value}, where=where)
            except CAEError as err:
                raise CAEError(f"{err} (from the range of {p.name})") from None
    return space
