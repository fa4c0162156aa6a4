"""Where the project's state lives: everything generated goes under ``runs/``."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cae.errors import CAEError


def project_root() -> Path:
    """The checkout the package runs from.

    Resolved from the package location rather than the working directory so that the default
    stores are the same absolute paths wherever a command is started from.
    """
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def file_kind(mode: int) -> str:
    """What ``stat``'s ``st_mode`` describes, in words for an error message."""
    kinds = [
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def runs_dir() -> Path:
    """Generated state: ``<repo>/runs`` (``CAE_RUNS_DIR`` moves it, e.g. for tests)."""
    return Path(os.environ.get("CAE_RUNS_DIR") or project_root() / "runs").resolve()


def resolve(path: str | Path) -> Path:
    """A relative path from the working directory, else from the checkout (``search_spaces/...``)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return project_root() / p if (project_root() / p).exists() else p


# A study's name becomes a folder (runs/<study>/) and an MLflow experiment: a plain
# file name only, so that no name can reach outside those folders (`/abs`, `../x`) or hide in them (`.x`).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_MAX_NAME = 100  # far below a file name's 255 bytes, leaving room for suffixes (-colorize, -sample, -kt)


def check_study_name(name: str, what: str = "study") -> str:
    """``name`` if it is a plain name (letters, digits, ``.``, ``_``, ``-``; no ``..``), else a one-line error.

    The one check of a study's (or experiment's) name: the CLI runs it on every command's
    ``--study`` before anything else, the configs on load, and :func:`study_dir` before any path is made.
    """
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name or len(name) > _MAX_NAME:
        shown = repr(name[:80] + "…" if isinstance(name, str) and len(name) > 80 else name)
        raise CAEError(
            f"{what} name {shown} is not a plain name: use at most {_MAX_NAME} letters, digits, '.', '_' and '-' "
            "(no '/', no '..', not starting with '.')"
        )
    return name


def study_dir(study: str) -> Path:
    """``runs/<study>``; a name that is not plain is refused here too, so no caller can write outside runs/."""
    return runs_dir() / check_study_name(study)


def report_dir(study: str) -> Path:
    """Where a study's reports, figures and comparisons go: ``runs/<study>/report/``, the user's own space
    (``make publish`` copies this project's to ``results/``)."""
    return study_dir(study) / "report"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or fail with a one-line error naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as err:
        if err.errno == errno.ENOSPC:
            raise  # a full disk, not a bad path: the callers' "no space left on <folder>" handling names it
        raise CAEError(f"cannot create directory {path}: {err.strerror or err}") from None
    return path


def check_writable(folder: Path) -> Path:
    """``folder`` exists and takes a file, or a one-line error: a read-only ``runs/`` (a read-only
    mount, another user's checkout) is said before anything trains, not as a traceback at the end."""
    ensure_dir(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise
        raise CAEError(
            f"cannot write in {folder}: {err.strerror or err}; give it write permission or set "
            "CAE_RUNS_DIR to a writable folder"
        ) from None
    return folder


def _disk_full_at(err: OSError, target: Path) -> OSError | None:
    """ENOSPC naming ``target`` when ``err`` is a full disk without a file name, else None.

    A write or close that fills the disk raises ENOSPC with no file name (only ``open`` sets one),
    so the one-line error could not otherwise say which folder is full.
    """
    if err.errno == errno.ENOSPC and not err.filename:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    return None


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it back at once


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` only on success.

    Readers therefore see either the old complete file or the new one, never a partial write
    (the rename is atomic on POSIX filesystems).
    """
    ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600; give it the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
    except OSError as err:
        named = _disk_full_at(err, target)
        if named is None:
            raise
        raise named from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
