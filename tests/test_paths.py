import json
from pathlib import Path

import pytest
import yaml

from cae.errors import CAEError
from cae.paths import atomic_path, check_study_name, ensure_dir, resolve, study_dir, write_text_atomic

REPO = Path(__file__).resolve().parent.parent


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_behind(tmp_path):
    target = tmp_path / "best.json"
    write_text_atomic(target, '{"trial_number": 3}')
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"trial_num')  # a partial write, then the process "dies"
        raise RuntimeError("killed mid-export")
    assert target.read_text() == '{"trial_number": 3}'
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "best.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and len(list(target.parent.iterdir())) == 1


def test_a_directory_under_a_regular_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CAEError, match=r"cannot create directory .*file/runs"):
        ensure_dir(tmp_path / "file" / "runs")


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    write_text_atomic(tmp_path / "a.md", "x")
    (tmp_path / "b.md").write_text("x")
    assert os.stat(tmp_path / "a.md").st_mode == os.stat(tmp_path / "b.md").st_mode


def test_checkout_files_resolve_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `make` and the CLI may start elsewhere; shipped files are still found
    assert resolve("search_spaces/reconstruction.yaml") == REPO / "search_spaces" / "reconstruction.yaml"
    (tmp_path / "mine.yaml").write_text("{}")
    assert resolve("mine.yaml") == Path("mine.yaml")  # a file of the working directory wins


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_committed_results_name_no_path_of_the_machine_they_were_made_on():
    """results/ is read on other checkouts: every path in it is repository-relative (CONVENTIONS.md)."""
    files = sorted((REPO / "results").rglob("*.json")) + sorted((REPO / "results").rglob("*.yaml"))
    assert len(files) >= 4  # the main search's records and the reference run's config are there
    for path in files:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        for text in _strings(data):
            assert not text.startswith(("/", "~")), f"{path.relative_to(REPO)}: absolute path {text!r}"


@pytest.mark.parametrize(
    "name", ["/abs/path", "../x", "a/b", "..", ".", ".hidden", "a..b", "a b", "é", "", "x" * 101, "a\nb", "a\\b", "~"]
)
def test_a_study_name_that_is_not_a_plain_file_name_is_refused_everywhere(name):
    with pytest.raises(CAEError, match="is not a plain name") as err:
        study_dir(name)  # the one way to runs/<study>: no caller can reach outside runs/
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("name", ["cae-search", "cae_search.v2", "bench-quick-tpe-s0-a1", "A1", "x" * 100])
def test_plain_study_names_are_kept(name):
    assert check_study_name(name) == name
