"""Config text read as strict YAML (cae/config_files.py): one-line errors naming the file and the
line, numbers as numbers, no key given twice, only a regular file of at most 1 MB; ``--set`` values
read the same way."""

import os
import re
import threading
from pathlib import Path

import pytest
import yaml

from cae.config import ExperimentConfig, load_experiment
from cae.config_files import parse_assignment, read_yaml, yaml_load
from cae.errors import CAEError

from .conftest import one_line_error


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  depth: [1, 2\n")
    with pytest.raises(CAEError, match=r"broken.yaml: line \d+"):
        load_experiment(path)


def test_yaml_files_that_are_not_mappings(tmp_path):
    (tmp_path / "empty.yaml").write_text("# only a comment\n")
    assert load_experiment(tmp_path / "empty.yaml") == ExperimentConfig()  # the defaults
    (tmp_path / "list.yaml").write_text("- model\n")
    with pytest.raises(CAEError, match=r"list\.yaml: expected a mapping of keys at the top level, got list"):
        load_experiment(tmp_path / "list.yaml")
    with pytest.raises(CAEError, match=r"config file .*nope\.yaml does not exist"):
        load_experiment(tmp_path / "nope.yaml")


def test_exponent_numbers_are_numbers():
    # Plain YAML 1.1 reads 1e-4 (no dot) as the string "1e-4": a learning rate would fail to load.
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"
    assert yaml_load("lr: 1e-4")["lr"] == 1e-4
    assert load_experiment(None, {"train.learning_rate": yaml_load("1e-4")}).train.learning_rate == 1e-4


def test_a_config_file_over_one_megabyte_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: '" + "a" * 1_500_000 + "'\n")
    message = one_line_error(path, read_yaml)
    assert re.search(r"config file .*big\.yaml is 1\.5 MB; a config file is at most 1 MB", message)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("train:\n  learning_rate: 1.0e-3\n  epochs: 2\n  learning_rate: 5.0\n", 4, "learning_rate"),
        ("seed: 1\nmodel: {depth: 2}\nseed: 2\n", 3, "seed"),
        ("model:\n  depth: 2\nmodel:\n  depth: 3\n", 3, "model"),
    ],
    ids=["nested", "top level", "a whole section"],
)
def test_a_duplicate_key_is_refused_with_its_line(tmp_path, text, line, key):
    """YAML keeps the last value silently: 1.0e-3 then 5.0 trained at 5.0."""
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    message = one_line_error(path, read_yaml)
    assert f"{path}: line {line}: duplicate key {key!r} (first on line" in message


def test_keys_merged_from_an_anchor_may_be_overridden(tmp_path):
    """``<<: *anchor`` exists to be overridden: that is no duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text("x-base: &base {depth: 2, filters: 8}\nmodel:\n  <<: *base\n  depth: 3\n")
    assert read_yaml(path)["model"] == {"depth": 3, "filters": 8}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("model.depth=[1,", r"^--set model\.depth: cannot read '\[1,' as a value: expected"),
        ("seed=" + "9" * 5000, r"^--set seed: cannot read '9{80}'… as a value: Exceeds the limit"),
        ("model.filters=" + "[" * 100_000, r"^--set model\.filters: cannot read '\[{80}'… as a value: nested too"),
    ],
    ids=["malformed", "over Python's digit limit", "nested too deeply"],
)
def test_a_value_that_cannot_be_read_is_one_line(assignment, message):
    with pytest.raises(CAEError) as err:
        parse_assignment(assignment)
    assert re.search(message, str(err.value)) and len(str(err.value)) < 300


def test_a_file_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("model: " + "[" * 100_000 + "\n")
    assert "values are nested too deeply to read" in one_line_error(path, read_yaml)


def read_within(path: Path, seconds: float = 5.0) -> BaseException | None:
    """``read_yaml(path)`` in a thread; fails the test if it has not returned after ``seconds``."""
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_yaml(path)
            outcome.append(None)
        except Exception as err:  # handed to the test to check
            outcome.append(err)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        # Release the reader blocked on opening the pipe, so the test process can end.
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"read_yaml({path}) hung for {seconds} s")
    return outcome[0]


def test_a_named_pipe_as_a_config_file_is_refused_at_once(tmp_path):
    """Opening a FIFO waits for a writer: CONFIG=/tmp/fifo used to hang with no output."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    err = read_within(fifo)
    assert isinstance(err, CAEError)
    assert str(err) == f"config file {fifo} is a FIFO (named pipe); a config file must be a regular file"


def test_a_directory_as_a_config_file_is_refused(tmp_path):
    message = one_line_error(tmp_path, read_yaml)
    assert message == f"config file {tmp_path} is a folder; a config file must be a regular file"
