"""The Celery app. Tasks are sent by name (see core/kick.py), so request code never imports them."""

import os
from contextvars import Token
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)

from core import observability

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["reconcile"])


# --- The request id travels with the work it causes (core/observability.py) -------------------------
@before_task_publish.connect
def _stamp_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Tasks sent while handling a request or a task carry its request id (kicks pass theirs explicitly:
    they are published from another thread)."""
    current = observability.request_id.get()
    if headers is not None and current:
        headers.setdefault(observability.REQUEST_ID_HEADER, current)


_TOKENS: dict[str, Token[str]] = {}


@task_prerun.connect
def _enter_request(task_id: str = "", task: Any = None, **_: Any) -> None:
    rid = getattr(getattr(task, "request", None), observability.REQUEST_ID_HEADER, None) or ""
    _TOKENS[task_id] = observability.request_id.set(str(rid))


@task_postrun.connect
def _leave_request(task_id: str = "", **_: Any) -> None:
    token = _TOKENS.pop(task_id, None)
    if token is not None:
        observability.request_id.reset(token)


@worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from prometheus_client import start_http_server

        start_http_server(settings.WORKER_METRICS_PORT, registry=observability.registry())


@worker_process_shutdown.connect
def _drop_dead_process_metrics(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
