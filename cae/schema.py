"""Configuration files as validated data: YAML -> nested frozen dataclasses, and back.

Generic over the dataclasses of :mod:`cae.config`: unknown keys, wrong types and values outside a
``Literal`` fail on load with the file, the key and what is allowed (one line, ``CAEError``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from cae.errors import CAEError, first_line, quoted
from cae.paths import file_kind, resolve


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a number (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _StrictLoader(_Loader):
    """``_Loader`` that refuses a key given twice in one mapping.

    YAML's parsers keep the last value silently, so a second ``learning_rate:`` further down a file
    would train at a value the reader of the first never sees. Keys merged in with ``<<: *anchor``
    are meant to be overridden and are not counted.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    seen = lines.get(key)
                except TypeError:  # an unhashable key: the base constructor says so with its line
                    continue
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {quoted(key)} (first on line {seen + 1}); a key may appear once in a mapping",
                        key_node.start_mark,
                    )
                lines[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


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


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; values are parsed as YAML scalars.

    An empty value is ``None`` (null: "automatic" for the keys that allow it); ``with_overrides``
    refuses it for every other key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CAEError(f"--set expects KEY=VALUE (e.g. train.epochs=3), got {quoted(text)}")
    key = key.strip()
    if not raw.strip():
        return key, None
    try:
        return key, yaml_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise CAEError(f"--set {key}: cannot read {quoted(raw)} as a value: {problem}") from None
    except ValueError as err:  # e.g. an integer over Python's 4,300-digit limit, raised by the constructor
        raise CAEError(f"--set {key}: cannot read {quoted(raw)} as a value: {first_line(err, 120)}") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise CAEError(f"--set {key}: cannot read {quoted(raw)} as a value: nested too deeply") from None


# The project's configs are a few kB; a file past this is not a config (a log, data, a generated
# file), and parsing it first would take minutes and memory before any error could be said.
MAX_CONFIG_BYTES = 1_000_000


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = resolve(path)
    try:
        status = path.stat()
        # Opening a named pipe blocks until something writes to it (a silent hang), and a directory
        # or a device is no config either: refused by what the file is, before it is opened.
        if not stat.S_ISREG(status.st_mode):
            raise CAEError(f"config file {path} is {file_kind(status.st_mode)}; a config file must be a regular file")
        size = status.st_size
        if size > MAX_CONFIG_BYTES:
            raise CAEError(f"config file {path} is {size / 1e6:.1f} MB; a config file is at most "
                           f"{MAX_CONFIG_BYTES / 1e6:.0f} MB (is it the right file?)")  # fmt: skip
        text = path.read_text()
    except FileNotFoundError:
        raise CAEError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CAEError(f"cannot read config file {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise CAEError(f"{path}:{line}: {problem}") from None
    except ValueError as err:  # e.g. an integer over Python's 4,300-digit limit, raised by the constructor
        raise CAEError(f"{path}: a value cannot be read: {str(err)[:200]}") from None
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise CAEError(f"{path}: values are nested too deeply to read (a config nests a few levels)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CAEError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


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
