"""The Tenter Celery app, instrumented for the benchmarks. Start a worker through it:

    python -m celery -A benchmarks.celery_counted worker --pool solo -Q tenter-bench

It counts, in this worker process (the solo pool runs tasks in the main process):
- SQL queries, via a `connection.execute_wrapper` installed on every new DB connection
  (`connection_created` signal), in total and per task name;
- tasks run, per task name; reconcile steps (rows recorded by `reconcile.engine.record_all`);
- RSS of the process.

It writes them as JSON to $BENCH_STATS_DIR/worker-<pid>.json when the worker is ready, when it receives
SIGUSR2 (a snapshot; the file's "seq" goes up), and at shutdown. App code is not modified; only
`engine.record_all` is wrapped in this process to count steps.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.db.backends.signals import connection_created

from config.celery import app  # noqa: F401  (celery -A finds `app` here)

STATS_DIR = Path(os.environ.get("BENCH_STATS_DIR", "/tmp"))
_state: dict[str, Any] = {
    "queries": 0,
    "queries_by_task": Counter(),
    "tasks": Counter(),
    "steps": 0,
    "seq": 0,
    "current": None,
}
_lock = threading.Lock()


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    _state["queries"] += 1
    task = _state["current"]
    if task is not None:
        _state["queries_by_task"][task] += 1
    return execute(sql, params, many, context)


def _on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_on_connection, weak=False)


@task_prerun.connect(weak=False)
def _prerun(task: Any = None, **kwargs: Any) -> None:
    _state["current"] = getattr(task, "name", "?")


@task_postrun.connect(weak=False)
def _postrun(task: Any = None, **kwargs: Any) -> None:
    _state["tasks"][getattr(task, "name", "?")] += 1
    _state["current"] = None


def _rss_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def dump(final: bool = False) -> None:
    with _lock:
        _state["seq"] += 1
        data = {
            "pid": os.getpid(),
            "seq": _state["seq"],
            "final": final,
            "queries": _state["queries"],
            "queries_by_task": dict(_state["queries_by_task"]),
            "tasks": dict(_state["tasks"]),
            "steps": _state["steps"],
            "rss_kb": _rss_kb(),
        }
        path = STATS_DIR / f"worker-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def _wrap_record() -> None:
    from reconcile import engine

    original = engine.record_all
    if getattr(original, "_bench_wrapped", False):
        return

    def record_all(model: Any, results: list[Any]) -> Any:
        _state["steps"] += len(results)
        return original(model, results)

    record_all._bench_wrapped = True  # type: ignore[attr-defined]
    engine.record_all = record_all  # the runner (and engine.record) look it up in the module at call time


@worker_ready.connect(weak=False)
def _ready(**kwargs: Any) -> None:
    _wrap_record()
    signal.signal(signal.SIGUSR2, lambda *_: dump())
    dump()


@worker_shutdown.connect(weak=False)
def _shutdown(**kwargs: Any) -> None:
    dump(final=True)
