"""System metrics on a cell's run page: CPU and memory, and on an NVIDIA GPU its utilisation and
memory, sampled by MLflow's own monitor (psutil, nvidia-ml-py) while the cell trains, so a starved
GPU shows on the run page as `system/gpu_0_utilization_percentage` far below 100.

MLflow's switch turns it off (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false) and its variables set the
pace (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, seconds, default 10).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sweeper.errors import warn

SWITCH = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"


def start(tracking_uri: str, run_id: str, resume: bool) -> Any | None:
    """A started monitor logging into the run (continuing its steps when resumed), None when off or unavailable."""
    if os.environ.get(SWITCH, "true").strip().lower() in ("false", "0", "no"):
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # MLflow says at INFO when it starts, stops, or finds no GPU: once per cell is noise here
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        monitor = SystemMetricsMonitor(run_id, resume_logging=resume, tracking_uri=tracking_uri)
        monitor.start()
    except Exception as exc:  # noqa: BLE001 - training goes on without the system panel
        warn(f"system metrics not logged for run {run_id} ({type(exc).__name__}: {exc})")
        return None
    return monitor


def stop(monitor: Any | None) -> None:
    """Stop sampling and send what was sampled (before the run is ended)."""
    if monitor is None:
        return
    try:
        monitor.finish()
    except Exception as exc:  # noqa: BLE001 - the metrics of the run itself are already stored
        warn(f"system metrics: could not flush ({type(exc).__name__}: {exc})")
