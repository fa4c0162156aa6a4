"""Configuration as validated data: plain data (from :mod:`cae.config_files`) -> nested frozen
dataclasses, and back.

Generic over the dataclasses of :mod:`cae.config`: unknown keys, wrong types and values outside a
``Literal`` fail on load with the file, the key and what is allowed (one line, ``CAEError``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from cae.errors import CAEError, quoted


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " or null"
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping of config keys to values"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


# Every integer a config holds ends up in 64-bit storage (NumPy, TensorFlow, SQLite for Optuna and
# MLflow); a larger one would pass here and fail mid-run far from the file that gave it.
INT_LIMIT = 2**63


def _got(value: Any) -> str:
    """How an error quotes a bad value: an empty one (``key:`` in YAML, ``--set key=``) by name."""
    return "an empty value" if value is None else quoted(value)


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:  # `train:` with nothing under it would silently mean "the defaults"
            raise CAEError(
                f"{where}: {key} is empty; give it keys (allowed: {', '.join(_field_names(tp))}) or leave it out"
            )
        return _from_dict(tp, value, where, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return coerce(value, inner[0], key, where)
    if origin is Literal:
        if value in get_args(tp) and not isinstance(value, bool):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(coerce(v, get_args(tp)[0], key, where) for v in value)
    elif origin is dict:  # config keys to values, checked where they are used (e.g. against a space)
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if -INT_LIMIT <= value < INT_LIMIT:
                return value
            raise CAEError(f"{where}: {key} must be an integer from -2**63 to 2**63 - 1, got {quoted(value)}")
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # nan passes every `<` check of validate() and inf overflows later, in the middle of a run
            try:
                number = float(value)
            except OverflowError:  # an integer past float's range
                number = math.inf
            if math.isfinite(number):
                return number
            raise CAEError(f"{where}: {key} must be a finite number, got {quoted(value)}")
    elif tp is str:
        if isinstance(value, str):
            return value
    raise CAEError(f"{where}: {key} must be {_type_name(tp)}, got {_got(value)}")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _from_dict(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CAEError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a mapping of keys, got {quoted(data)}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            hint = suggest(prefix + str(key)[:100], [prefix + n for n in names])  # a huge key: a prefix
            raise CAEError(f"{where}: unknown key {quoted(prefix + str(key))}; {hint}")
    values = {k: coerce(v, hints[k], prefix + k, where) for k, v in data.items()}
    obj = cls(**values)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except CAEError as err:
            raise CAEError(f"{where}: {err}") from None
    return obj


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build a (nested) config dataclass from plain data; ``where`` names the source in errors."""
    return _from_dict(cls, data, where)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) that ``from_dict`` reads back to an equal config."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def flatten(config: Any) -> dict[str, Any]:
    """``{"model.depth": 2, ...}``: the dotted keys used in search spaces and MLflow params."""
    return flatten_mapping(to_dict(config))


def flatten_mapping(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested plain data (e.g. a YAML block) as dotted keys: ``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(flatten_mapping(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def suggest(key: str, keys: list[str]) -> str:
    """ "did you mean ...?" for a misspelt or unprefixed key (``train.x`` on a search is
    ``experiment.train.x``), else the keys allowed."""
    prefixed = [k for k in keys if k.endswith("." + key)]
    # Scored on the last part (a shared `experiment.model.` prefix makes every key look close), and
    # only the near-best: `model.dpth` suggests model.depth, not model.predict as well.
    last = key.rsplit(".", 1)[-1]
    scores = {k: difflib.SequenceMatcher(None, last, k.rsplit(".", 1)[-1]).ratio() for k in keys}
    best = max(scores.values(), default=0.0)
    near = sorted((k for k, r in scores.items() if r >= max(0.6, best - 0.05)), key=lambda k: -scores[k])
    close = prefixed or near[:3]
    return f"did you mean {' or '.join(close)}?" if close else f"allowed: {', '.join(keys)}"


def field_type(cls: type, dotted: str) -> Any:
    """Type hint of a dotted key (``model.depth`` -> int); CAEError listing the keys if unknown."""
    tp: Any = cls
    for part in dotted.split("."):
        hints = get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
        if part not in hints:
            raise CAEError(f"unknown key '{dotted}'; {suggest(dotted, list(flatten(cls())))}")
        tp = hints[part]
    return tp


def _leaf_overrides(cls: type, overrides: Mapping[str, Any], where: str) -> list[tuple[str, Any]]:
    """``overrides`` as (dotted key of a value, value) pairs: a section's mapping is spread over its keys.

    A section given anything else (``--set experiment.train=``) is refused: replacing it would reset
    every key of the section to its default without a word.
    """
    pairs: list[tuple[str, Any]] = []
    for dotted, value in overrides.items():
        tp = field_type(cls, str(dotted))  # unknown key -> one-line error
        if not dataclasses.is_dataclass(tp):
            pairs.append((str(dotted), value))
        elif isinstance(value, Mapping) and value:
            pairs += _leaf_overrides(cls, {f"{dotted}.{k}": v for k, v in value.items()}, where)
        else:
            names = _field_names(tp)
            raise CAEError(
                f"{where}: {dotted} is a section, not a value: set its keys instead, e.g. {dotted}.{names[0]}=... "
                f"(allowed: {', '.join(names)}); got {_got(None if isinstance(value, Mapping) else value)}"
            )
    return pairs


def with_overrides(config: T, overrides: Mapping[str, Any], where: str = "override") -> T:
    """A copy of ``config`` with dotted keys replaced, validated again as a whole."""
    if not overrides:
        return config
    data = to_dict(config)
    for dotted, value in _leaf_overrides(type(config), overrides, where):
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return from_dict(type(config), data, where)


def check_choices(config: Any, prefix: str = "") -> None:
    """Every ``Literal`` field holds one of its values, also in a config built in code.

    ``from_dict`` checks this on load; a dataclass constructed directly (``ModelConfig(downsample=
    "maxpol")``) would otherwise build a model that silently ignores the unknown mode.
    """
    hints = get_type_hints(type(config))
    for f in dataclasses.fields(config):
        tp, value = hints[f.name], getattr(config, f.name)
        if get_origin(tp) in (Union, types.UnionType):
            if value is None:
                continue
            tp = next(a for a in get_args(tp) if a is not type(None))
        if get_origin(tp) is Literal and (value not in get_args(tp) or isinstance(value, bool)):
            raise CAEError(f"{prefix}{f.name} must be {_type_name(tp)}, got {quoted(value)}")
