"""Credentials for a secured tracking server (MLflow's basic-auth app), kept out of command lines.

Clients and the server read the same two places, as MLflow's own client does:
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` in the environment, else
``~/.mlflow/credentials`` (``[mlflow]`` with ``mlflow_tracking_username`` / ``mlflow_tracking_password``),
which must not be readable by group or others. The server's admin account is created from them on
its first start; its password reaches the server through its environment, never its argv.
"""

from __future__ import annotations

import configparser
import os
import secrets
import stat
from pathlib import Path

from cae.errors import CAEError
from cae.paths import ensure_dir, runs_dir

MIN_PASSWORD = 12  # MLflow's basic-auth app refuses shorter admin passwords
HOW = (
    "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or write them to ~/.mlflow/credentials "
    "([mlflow] mlflow_tracking_username = ..., mlflow_tracking_password = ...; chmod 600)"
)


def credentials_file() -> Path:
    return Path(os.path.expanduser("~/.mlflow/credentials"))


def read_credentials() -> tuple[str, str] | None:
    """(username, password) from the environment, else the credentials file; None when neither has both.

    A credentials file that group or others can read is refused (one line), even when unused.
    """
    path = credentials_file()
    from_file: tuple[str | None, str | None] = (None, None)
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise CAEError(f"{path} is readable by other users (mode {mode:03o}); run `chmod 600 {path}`")
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error as err:
            raise CAEError(f"{path} is not a valid credentials file ({type(err).__name__}); {HOW}") from None
        section = parser["mlflow"] if parser.has_section("mlflow") else {}
        from_file = (section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password"))
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or from_file[0]
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or from_file[1]
    return (user, password) if user and password else None


def _secret_key(folder: Path) -> str:
    """The Flask session key of the auth app: ``MLFLOW_FLASK_SERVER_SECRET_KEY``, else a file (mode 600)."""
    if os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        return os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    path = folder / "flask-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def auth_server_env(folder: Path | None = None) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs in its environment.

    The user database lives in ``folder`` (default ``runs/auth/``) as an absolute SQLite path
    (MLflow's default is relative to the working directory). Raises a one-line error without
    credentials or with a password MLflow would refuse.
    """
    found = read_credentials()
    if found is None:
        raise CAEError(f"a tracking server open to the network needs an admin account: {HOW}")
    user, password = found
    if len(password) < MIN_PASSWORD:
        raise CAEError(f"the tracking password must have at least {MIN_PASSWORD} characters (MLflow's rule)")
    folder = ensure_dir(folder or runs_dir() / "auth")
    os.chmod(folder, 0o700)  # the user database and the session key
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "# Written by `cae ui`: authenticated users may read everything; writing needs EDIT on the\n"
        "# experiment, which its creator and the admin have (workers log in as the admin account).\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{(folder / 'basic_auth.db').absolute()}\n"
        f"admin_username = {user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "# Without the cache every request spends ~250 ms checking the password hash.\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret_key(folder),
        "MLFLOW_AUTH_ADMIN_USERNAME": user,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,  # used on the first start only (MLflow's rule)
    }
