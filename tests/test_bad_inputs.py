"""Bad inputs, table-driven: each ends as one `error: ...` line, exit status 2, and nothing half-written.

Run in-process through ``cae.cli.main`` (a CLI subprocess would import TensorFlow for every row).
Each row checks what applies to it: no study in the Optuna storage, no MLflow experiment or run,
no new file under runs/ (or the reports folder).
"""

from __future__ import annotations

import io
import json
import re
import socket
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from cae import paths
from cae.cli import main
from cae.data import load_splits
from cae.sources import SAMPLE_PATH
from cae.tracking import Tracker

REPO = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    """A port nobody listens on (bound, then closed: refused until someone takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Case:
    """What one row runs: ``argv`` and environment built from the row's own temporary folder."""

    tmp: Path
    study: str
    storage: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.storage = f"sqlite:///{self.tmp}/optuna.db"

    def search_yaml(self, space: dict | None = None, **experiment: object) -> str:
        """A tiny search config on the sample, plus ``experiment`` keys; ``space`` a space file's params."""
        data = {
            "study": self.study,
            "trials": 1,
            "storage": self.storage,
            "experiment": {"data": {"source": "sample", "subset": 160}, "train": {"epochs": 1}, **experiment},
        }
        if space is not None:
            (self.tmp / "space.yaml").write_text(yaml.safe_dump({"params": space}))
            data["space"] = str(self.tmp / "space.yaml")
        path = self.tmp / "search.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)


def truncated_tarball(case: Case) -> str:
    path = case.tmp / "cifar.tar.gz"
    data = SAMPLE_PATH.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut off halfway
    return str(path)


def wrong_size_tree(case: Case) -> str:
    root = case.tmp / "images"
    for name, size in (("train/cat/0.png", 32), ("train/dog/1.png", 32), ("test/cat/2.png", 16)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / name)
    return str(root)


def wrong_size_tarball(case: Case) -> str:
    """The same mistake inside a .tar.gz (the other container the loader reads)."""
    path = case.tmp / "images.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, size in (("train/cat/0.png", 32), ("test/dog/1.png", 24)):
            buf = io.BytesIO()
            Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)
    return str(path)


def under_a_file(case: Case) -> str:
    (case.tmp / "a-file").write_text("not a folder")
    return str(case.tmp / "a-file" / "runs")


COMMITTED_BEST = REPO / "results" / "cae-search-v1" / "best.json"  # a real export, to damage


def damaged_best(case: Case, damage: str) -> str:
    """The row's study with a best.json as a reader may find it: cut off, or edited by hand."""
    text = COMMITTED_BEST.read_text()
    if damage == "truncated":  # an export copied while being written, or a full disk
        text = text[: len(text) // 2]
    elif damage == "value as text":  # edited by hand: the number pasted in quotes
        record = json.loads(text)
        text = json.dumps({**record, "best_val_loss": str(record["best_val_loss"])}, indent=2)
    elif damage == "key removed":
        text = json.dumps({k: v for k, v in json.loads(text).items() if k != "trial_number"}, indent=2)
    path = paths.study_dir(case.study) / "best.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return case.study


def abs_study_yaml(case: Case) -> str:
    """The row's search YAML with an absolute path as its study."""
    path = Path(case.search_yaml())
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "study": str(case.tmp / "elsewhere")}))
    return str(path)


def experiment_yaml(case: Case, text: str) -> str:
    path = case.tmp / "experiment.yaml"
    path.write_text(text)
    return str(path)


# (row id, argv for the row, the one-line message expected after "error: ", env for the row)
Row = tuple[str, Callable[[Case], list[str]], str, Callable[[Case], dict[str, str]] | None]
ROWS: list[Row] = [
    (
        "unknown experiment key (experiment YAML)",
        lambda c: ["train", experiment_yaml(c, "model: {depth: 2, dpth: 3}\n"), "--data", "sample"],
        r"experiment\.yaml: unknown key 'model\.dpth'; did you mean model\.depth\?$",
        None,
    ),
    (
        "unknown experiment key (search YAML)",
        lambda c: ["search", c.search_yaml(model={"dpth": 3})],
        r"search\.yaml: unknown key 'experiment\.model\.dpth'; did you mean experiment\.model\.depth\?$",
        None,
    ),
    (
        "unknown key in --set",
        lambda c: ["search", c.search_yaml(), "--set", "experiment.train.epoch=3"],
        r"unknown key 'experiment\.train\.epoch'; did you mean experiment\.train\.epochs",
        None,
    ),
    (
        "a key the search space samples, fixed with --set (every trial would replace it)",
        lambda c: ["search", c.search_yaml(), "--set", "train.learning_rate=1e-3"],
        r"SET train\.learning_rate: the study's space .* samples it, so every trial would replace it",
        None,
    ),
    (
        "search range low > high",
        lambda c: ["search", c.search_yaml(space={"model.depth": {"low": 3, "high": 2}})],
        r"space\.yaml: model\.depth: low \(3\) is greater than high \(2\)$",
        None,
    ),
    (
        "empty choice list",
        lambda c: ["search", c.search_yaml(space={"model.filter_growth": {"choices": []}})],
        r"space\.yaml: model\.filter_growth: choices must be a non-empty list, got \[\]$",
        None,
    ),
    (
        "search range that shrinks the image below 1x1",
        lambda c: ["search", c.search_yaml(space={"model.depth": {"low": 2, "high": 6}})],
        r"model\.depth=6 would shrink the 32×32 image below 1×1 .*\(from the range of model\.depth\)$",
        None,
    ),
    (
        "depth that shrinks the image below 1x1",
        lambda c: ["search", c.search_yaml(), "--set", "experiment.model.depth=6"],
        r"model\.depth=6 would shrink the 32×32 image below 1×1 or leave no pooling stage; allowed: 1\.\.5$",
        None,
    ),
    (
        "data path that does not exist",
        lambda c: ["search", c.search_yaml(), "--data", str(c.tmp / "nowhere")],
        r"data path .*/nowhere does not exist; supply CIFAR-10 with DATA=<path>",
        None,
    ),
    (
        "truncated tarball",
        lambda c: ["search", c.search_yaml(), "--data", truncated_tarball(c)],
        r"cifar\.tar\.gz: archive is truncated or corrupt \(",
        None,
    ),
    (
        "image of the wrong size in a class folder",
        lambda c: ["search", c.search_yaml(), "--data", wrong_size_tree(c)],
        r"images/test/cat/2\.png: expected a 32×32 image, got 16×16$",
        None,
    ),
    (
        "image of the wrong size in a tarball",
        lambda c: ["search", c.search_yaml(), "--data", wrong_size_tarball(c)],
        r"images\.tar\.gz/test/dog/1\.png: expected a 32×32 image, got 24×24$",
        None,
    ),
    (
        "non-writable output directory",
        lambda c: ["search", c.search_yaml()],
        r"cannot create directory .*/a-file/runs.*: Not a directory$",
        lambda c: {"CAE_RUNS_DIR": under_a_file(c)},
    ),
    (
        "invalid storage URL",
        lambda c: ["search", c.search_yaml(), "--storage", "notaurl"],
        r"invalid storage URL 'notaurl'; expected sqlite:///path\.db, postgresql://user@host/db",
        None,
    ),
    (
        "unreachable PostgreSQL storage (password not shown)",
        lambda c: ["search", c.search_yaml(), "--storage", f"postgresql://cae:s3cret@127.0.0.1:{closed_port()}/cae"],
        r"cannot open Optuna storage postgresql://cae:\*\*\*@127\.0\.0\.1:\d+/cae: .*(refused|failed)",
        None,
    ),
    (
        "unreachable tracking server",
        lambda c: ["search", c.search_yaml()],
        r"MLflow tracking store http://127\.0\.0\.1:\d+ is unreachable \(.*\); start the server or fix MLFLOW_TRAC",
        lambda c: {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}"},
    ),
    (
        "study that does not exist: best",
        lambda c: ["best", "--study", "nope-best"],
        r"no best trial exported for study 'nope-best' \(.*best\.json missing\); "
        r"run `make search STUDY=nope-best` first$",
        None,
    ),
]
# A damaged best.json is one line naming the file and how to regenerate it, for each reader.
REGENERATE = r"; rerun the study \(`make search STUDY=bad-[^`]+`\) to regenerate it"
OR_CONFIG = ", or pass CONFIG=<experiment yaml> to colorize an explicit architecture"
ROWS += [
    (
        f"{damage} best.json: {command}",
        lambda c, damage=damage, command=command: [command, "--study", damaged_best(c, damage)],
        rf"/bad-[^/]+/best\.json is damaged \({why}\){REGENERATE}"
        + (re.escape(OR_CONFIG) if command != "best" else "")
        + "$",
        None,
    )
    for damage, why in (
        ("truncated", "JSONDecodeError"),
        ("value as text", "key 'best_val_loss' missing or not float"),
        ("key removed", "key 'trial_number' missing or not int"),
    )
    for command in ("best", "colorize")
]
ROWS += [
    (
        "study that does not exist: compare",
        lambda c: ["compare", "--study", "nope-compare"],
        r"no study 'nope-compare' in MLflow store .*; studies there: ",
        None,
    ),
    (
        "study that does not exist: colorize",
        lambda c: ["colorize", "--study", "nope-colorize"],
        r"no best trial exported for study 'nope-colorize' .*run `make search STUDY=nope-colorize` first, "
        r"or pass CONFIG=<experiment yaml> to colorize an explicit architecture$",
        None,
    ),
]

# A study name that would reach outside runs/ (or reports/) is refused by every command, before anything runs.
NOT_PLAIN = r"study name '{}' is not a plain name: use at most 100 letters, digits, '\.', '_' and '-' \(no '/', no"
ROWS += [
    (
        "absolute study name: train",
        lambda c: ["train", "--study", str(c.tmp / "elsewhere"), "--data", "sample"],
        NOT_PLAIN.format("/[^']*"),  # a long path is shown cut short, ending in …
        None,
    ),
    ("study name with ..: best", lambda c: ["best", "--study", "../x"], NOT_PLAIN.format(r"\.\./x"), None),
    ("study name with ..: colorize", lambda c: ["colorize", "--study", "a..b"], NOT_PLAIN.format(r"a\.\.b"), None),
    ("study name with /: delete", lambda c: ["delete", "--study", "a/b"], NOT_PLAIN.format("a/b"), None),
    ("study name with ..: compare", lambda c: ["compare", "--study", "ok,../x"], NOT_PLAIN.format(r"\.\./x"), None),
    ("study name with a space: report", lambda c: ["report", "--study", "a b"], NOT_PLAIN.format("a b"), None),
    (
        "hidden study name: search",
        lambda c: ["search", c.search_yaml(), "--study", ".x"],
        NOT_PLAIN.format(r"\.x"),
        None,
    ),
    (
        "absolute study name in a search YAML",
        lambda c: ["search", abs_study_yaml(c)],
        NOT_PLAIN.format("/.*"),
        None,
    ),
]


@pytest.fixture(scope="module")
def tracker(tracking_uri) -> Tracker:
    """The module's MLflow store, created (and the sample's decode cache written) before any row."""
    load_splits("sample", seed=42, subset=160)
    return Tracker(tracking_uri).check()


def snapshot(*roots: Path) -> set[str]:
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")}


def mlflow_state(tracker: Tracker) -> tuple[list[str], int]:
    from mlflow.entities import ViewType

    experiments = tracker.client.search_experiments(view_type=ViewType.ALL)
    runs = tracker.client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=50000
    )
    return sorted(e.name for e in experiments), len(runs)


@pytest.mark.parametrize(("argv", "message", "env"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_and_leaves_nothing_behind(argv, message, env, tracker, tmp_path, monkeypatch, capsys):
    case = Case(tmp_path, f"bad-{tmp_path.name[-24:]}")  # its own runs/<study> folder
    args = argv(case)
    for key, value in (env(case) if env else {}).items():
        monkeypatch.setenv(key, value)
    watched = (paths.runs_dir(),)
    files_before, mlflow_before = snapshot(*watched), mlflow_state(tracker)
    capsys.readouterr()

    code = main(args)

    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one final `error:` line, got:\n{err}"
    assert re.search(message, errors[0].removeprefix("error: ")), errors[0]
    assert "s3cret" not in err  # a password in a storage URL is never printed

    assert snapshot(*watched) == files_before  # no study folder, best.json, plots or reports
    assert mlflow_state(tracker) == mlflow_before  # no experiment, no run
    if (tmp_path / "optuna.db").exists():
        assert case.study not in optuna.get_all_study_names(storage=case.storage)
