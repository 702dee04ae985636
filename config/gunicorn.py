"""gunicorn settings: `gunicorn -c python:config.gunicorn config.wsgi:application` (Dockerfile, deploy/).

On SIGTERM gunicorn stops accepting, lets in-flight requests finish for `graceful_timeout` seconds, then
exits; Kubernetes waits terminationGracePeriodSeconds (45 s in deploy/base/web.yaml) before SIGKILL.
With PROMETHEUS_MULTIPROC_DIR set, every worker process writes its metrics there; the folder is emptied
at start and a dead worker's live gauges are dropped.
"""

import os
import shutil
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None  # "" turns it off


def on_starting(server: Any) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
