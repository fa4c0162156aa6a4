"""Optional system metrics per run: CPU, memory, disk, network and (with NVML) GPU use over time.

Off by default (a sampling thread and one extra request per sample); ``CAE_SYSTEM_METRICS=1`` turns
it on for every run the harness creates or resumes, ``CAE_SYSTEM_METRICS_INTERVAL`` sets the seconds
between samples (default 10). MLflow logs them as ``system/*`` metrics; GPU figures need
``nvidia-ml-py`` (the ``gpu`` extra installs it).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from cae.errors import CAEError

FLAG = "CAE_SYSTEM_METRICS"
INTERVAL = "CAE_SYSTEM_METRICS_INTERVAL"


def system_metrics_enabled() -> bool:
    value = os.environ.get(FLAG, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise CAEError(f"{FLAG}={os.environ[FLAG]!r} is not understood; use 1 (on) or 0 (off)")


def _interval() -> float:
    text = os.environ.get(INTERVAL, "10")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise CAEError(f"{INTERVAL}={text!r} must be a positive number of seconds")
    return seconds


def check_system_metrics() -> None:
    """One-line errors for a misspelt flag or interval, before any run exists."""
    if system_metrics_enabled():
        _interval()


def start_system_metrics(run_id: str, tracking_uri: str) -> Any:
    """A started ``SystemMetricsMonitor`` for ``run_id`` if the flag is on, else None."""
    if not system_metrics_enabled():
        return None
    try:
        import psutil  # noqa: F401  (MLflow's CPU monitor needs it; say so instead of logging nothing)
    except ImportError:
        raise CAEError(f"{FLAG}=1 needs psutil, which is not installed; run `make setup`") from None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # "Skip logging GPU metrics" at INFO on every CPU-only run is noise.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=_interval(), samples_before_logging=1, resume_logging=True, tracking_uri=tracking_uri
    )
    monitor.start()
    return monitor
