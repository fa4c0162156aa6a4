"""Environment variables set for a while and put back as they were (also when they were unset)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, unset) ``values`` inside the block; restore every one afterwards.

    Libraries such as MLflow read some settings only from the environment (request retries, progress
    bars, the global tracking URI), so a setting for one call has to pass through it.
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
