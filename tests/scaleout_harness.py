"""The scale-out scenario's moving parts, shared by tests/test_scale_out.py (small, asserts) and
benchmarks/bench_scaleout.py (1,000 projects, figures): Tenter's own processes started as real
processes (gunicorn, prefork Celery workers, Celery beats) on one PostgreSQL, Redis and kubesim; HTTP
clients creating projects through the API; SIGTERM (a rolling update) and SIGKILL (a node lost); and the
checks on what they left behind (kubesim's request log, the ResourceEvent timeline).

Nothing here asserts: the test asserts, the benchmark reports. Django models are imported inside the
functions that read the database, so the process helpers work before Django is set up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def database_url(settings_dict: dict[str, Any]) -> str:
    """The DATABASE_URL of Django's connection settings (the test database, for the test)."""
    db = settings_dict
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def process_env(base: dict[str, str], *, port: int, **overrides: str) -> dict[str, str]:
    """The environment of every process of the fleet: gunicorn bound to 127.0.0.1:port, no access log."""
    env = dict(
        base,
        WEB_CONCURRENCY="2",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESS_LOG="",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env.update(overrides)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the test runner's; an error in a deployment
    return env


class Fleet:
    """Named processes of one deployment, each logging to logdir/<name>.log.

    Each process leads its own process group: SIGTERM goes to the main process only (what Kubernetes
    does to a container's PID 1); SIGKILL goes to the whole group (a container or node lost takes the
    prefork children with it)."""

    def __init__(self, env: dict[str, str], logdir: Path):
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = int(env["GUNICORN_BIND"].rsplit(":", 1)[1])

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115  # the process owns it
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def web(self, name: str = "web") -> subprocess.Popen[bytes]:
        return self._start(
            name, ["-m", "gunicorn", "-c", "python:config.gunicorn", "config.wsgi:application"]
        )

    def beat(self, name: str) -> subprocess.Popen[bytes]:
        return self._start(
            name, ["-m", "celery", "-A", "config", "beat", "--schedule", str(self.logdir / name)]
        )

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        log = self.logdir / f"{name}.log"
        if log.exists():  # a restarted worker's "ready." is its own; the old log is kept beside it
            log.rename(self.logdir / f"{name}.{len(list(self.logdir.glob(f'{name}.*.log'))) + 1}.log")
        return self._start(
            name,
            ["-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
             "--loglevel", "INFO", "-n", f"{name}@%h"],
        )  # fmt: skip

    def wait_web(self, name: str = "web", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} did not answer:\n{self.log(name)[-3000:]}") from None
                time.sleep(0.3)

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        """Until the worker logged "ready." (SIGTERM before Celery installs its handlers just kills it)."""
        deadline = time.monotonic() + timeout
        while "ready." not in self.log(name):
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not become ready:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def terminate(self, name: str, timeout: float = 60) -> int:
        """SIGTERM to the main process; its exit code (the worker finishes its step and releases)."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@dataclass
class Creates:
    """What the HTTP clients did: project ids with the wall-clock start of their POST, and errors."""

    started: dict[str, float] = field(default_factory=dict)  # project id -> time.time() at the POST
    latencies: list[float] = field(default_factory=list)  # seconds per POST
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_projects(
    port: int, tokens: Sequence[str], per_client: int, name: str = "Scale"
) -> tuple[Creates, list[threading.Thread]]:
    """One client thread per token, each POSTing per_client projects one after the other, started;
    what they record goes into the returned Creates (read it after joining the threads)."""
    creates = Creates()

    def client(token: str) -> None:
        for n in range(per_client):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/projects",
                data=json.dumps({"name": f"{name} {n}"}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            t0, m0 = time.time(), time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    pk = json.loads(resp.read())["id"]
            except Exception as exc:
                with creates.lock:
                    creates.errors.append(repr(exc))
                continue
            with creates.lock:
                creates.started[pk] = t0
                creates.latencies.append(time.perf_counter() - m0)

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in tokens]
    for t in threads:
        t.start()
    return creates, threads


def duplicate_creates(stats: dict[str, Any], namespaces: Iterable[str]) -> tuple[int, list[str], list[str]]:
    """From kubesim's request log, in these namespaces: (objects created, objects created more than once,
    objects whose create was sent more than once). The last is no fault: a step re-run after its worker
    was killed mid-step sends its creates again and kubesim answers 409 AlreadyExists."""
    spaces = tuple(f" {ns}/" for ns in namespaces)

    def ours(counts: dict[str, int]) -> dict[str, int]:
        return {k: n for k, n in counts.items() if k.startswith("create ") and any(s in k for s in spaces)}

    created = ours(stats.get("created_by_object", {}))
    sent = ours(stats.get("by_object", {}))
    return (
        len(created),
        sorted(k for k, n in created.items() if n > 1),
        sorted(k for k, n in sent.items() if n > 1),
    )


def duplicate_transitions(project_ids: Iterable[str]) -> list[tuple[Any, str]]:
    """(resource, to-status) pairs the timeline records more than once: a step recorded twice."""
    from sandboxes.models import ResourceEvent

    counts = Counter(
        ResourceEvent.objects.filter(project_id__in=list(project_ids)).values_list("resource_id", "to_status")
    )
    return [key for key, n in counts.items() if n > 1]


def not_running(project_ids: Iterable[str]) -> list[str]:
    from projects.models import Project

    return [
        str(s)
        for s in Project.objects.filter(pk__in=list(project_ids))
        .exclude(status="RUNNING")
        .values_list("status", flat=True)
    ]


def wait_all_running(project_ids: Sequence[str], timeout: float) -> list[str]:
    """Until every project is RUNNING (or those that are not are all in ERROR, which they do not leave
    by themselves) or timeout; the statuses of those that are not RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        left = not_running(project_ids)
        if not left or set(left) == {"ERROR"} or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def running_at(project_ids: Iterable[str]) -> dict[str, float]:
    """Project id -> when its sandbox first reached RUNNING (the timeline's clock, epoch seconds)."""
    from sandboxes.models import ResourceEvent, Sandbox

    sandbox_of = dict(
        Sandbox.objects.filter(project_id__in=list(project_ids)).values_list("pk", "project_id")
    )
    out: dict[str, float] = {}
    for rid, at in (
        ResourceEvent.objects.filter(resource_id__in=list(sandbox_of), to_status="RUNNING")
        .order_by("created_at")
        .values_list("resource_id", "created_at")
    ):
        out.setdefault(str(sandbox_of[rid]), at.timestamp())
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
