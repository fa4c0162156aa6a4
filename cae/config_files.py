"""Config text as plain data: a config file, or a ``--set KEY=VALUE`` value, read as strict YAML.

Strict: ``1e-4`` is a number (YAML 1.1 would make it a string), a key given twice in one mapping is
refused with its line, and a file is read only if it is a regular file of at most
:data:`MAX_CONFIG_BYTES`. Every failure is one line naming the file (or the key) and the place.
:mod:`cae.schema` turns the data into typed dataclasses.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

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
