"""Storage and tracking URLs, read the same way by every command (search, dashboard, workers).

Users write ``sqlite:///path.db``, ``postgresql://user@host/db`` or ``journal:///path.log``; what
Optuna, MLflow and optuna-dashboard need is derived here, once.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path


def with_driver(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg2://``, the driver the project installs.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed: without
    this, Optuna, the MLflow client and ``mlflow server`` all fail with "No module named 'psycopg'".
    """
    return "postgresql+psycopg2://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


# A URL's password: ``scheme://user:SECRET@host``, read as SQLAlchemy reads it (an empty user, and a
# password holding ``/`` or ``:``, up to the first ``@``), and secrets passed as query parameters
# (``?password=...``, libpq's form, or a token).
_USERINFO = re.compile(r"(://[^\s:/@]*:)[^\s@]+@")
_QUERY_SECRET = re.compile(
    r"([?&](?:password|passwd|pwd|secret|token|access_token|api_key|apikey)=)[^&#\s]+", re.IGNORECASE
)


def shown(url: str) -> str:
    """``url`` (or any text holding URLs) without its passwords: the one masking function.

    Everything recorded or printed that may hold a storage or tracking URL goes through it:
    messages, reports, and every MLflow param and tag (:class:`cae.tracking.run.Run`).
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1***@", url))


def default_storage() -> str:
    """The Optuna storage when ``STORAGE`` is unset: ``sqlite:///<repo>/runs/optuna.db`` (absolute)."""
    from cae.paths import runs_dir

    return f"sqlite:///{runs_dir() / 'optuna.db'}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).absolute() if path and path != ":memory:" else None


def journal_path(url: str) -> Path | None:
    """The file of a journal storage (``journal:///abs/x.log``, ``journal:rel.log``, ``x.log``), else None."""
    if not (url.startswith("journal:") or url.endswith((".log", ".jsonl"))):
        return None
    rest = url.removeprefix("journal:")
    if rest.startswith("///"):
        return Path("/" + rest[3:].lstrip("/"))
    return Path(rest.removeprefix("//"))


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:secret@host``)."""
    return shown(url) != url


def is_local_host(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only (the loopback interface).

    ``localhost``, ``127.0.0.0/8``, ``::1`` (also bracketed, and as ``::ffff:127.x``) are local; anything
    else is not, names that merely start like an address included (``127.evil.com``, ``localhost.evil.com``):
    a name is resolved by the network, so only the literal ``localhost`` is trusted.
    """
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # Python < 3.13 calls ::ffff:127.0.0.1 not loopback
    return (mapped or address).is_loopback
