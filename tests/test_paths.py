import pytest

from cae.errors import CAEError
from cae.paths import atomic_path, ensure_dir, write_text_atomic


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
