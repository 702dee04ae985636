"""Scale-out, small (issue 18): gunicorn, two prefork workers and two beats as real processes on one
PostgreSQL, Redis and kubesim; projects created over HTTP by concurrent clients; one worker stopped with
SIGTERM and restarted, one killed with SIGKILL and restarted. Every project reaches RUNNING, nothing is
created twice on the cluster and no transition is recorded twice. (benchmarks/ measures the speed.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from core.audit import SYSTEM
from projects.models import Project
from sandboxes.models import ResourceEvent
from tests.factories import UserFactory
from userconfig import services as userconfig_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
USERS, PER_USER = 3, 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115  # the process owns it
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _worker(env: dict[str, str], tmp: Path, name: str) -> subprocess.Popen[bytes]:
    return _start(
        ["-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
         "--loglevel", "INFO", "-n", f"{name}@%h"],
        env, tmp / f"{name}.log",
    )  # fmt: skip


def test_processes_on_one_database_bring_every_project_up_through_restarts(kubesim, tmp_path):
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        CELERY_QUEUE=f"tenter-scale-{uuid.uuid4().hex[:8]}",
        RECONCILE_LEASE_SECONDS="8",
        RECONCILE_SWEEP_SECONDS="1",
        BEAT_LEADER_TTL_SECONDS="5",
        WEB_CONCURRENCY="2",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESS_LOG="",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    namespaces, tokens = [], []
    for i in range(USERS):
        user = UserFactory()
        ns = kubesim.create_namespace(f"scale-{uuid.uuid4().hex[:6]}-{i}")
        userconfig_services.kubeconfig_save(user=user, text=kubesim.kubeconfig(ns), actor=SYSTEM)
        _, secret = userconfig_services.api_token_create(user=user, name="scale", actor=SYSTEM)
        namespaces.append(ns)
        tokens.append(secret)

    procs: dict[str, subprocess.Popen[bytes]] = {
        "web": _start(["-m", "gunicorn", "-c", "python:config.gunicorn", "config.wsgi:application"], env,
                      tmp_path / "web.log"),
        "beat-a": _start(["-m", "celery", "-A", "config", "beat", "--schedule", str(tmp_path / "a")], env,
                         tmp_path / "beat-a.log"),
        "beat-b": _start(["-m", "celery", "-A", "config", "beat", "--schedule", str(tmp_path / "b")], env,
                         tmp_path / "beat-b.log"),
        "w1": _worker(env, tmp_path, "w1"),
        "w2": _worker(env, tmp_path, "w2"),
    }  # fmt: skip
    created: list[str] = []
    errors: list[str] = []

    def client(token: str) -> None:
        for n in range(PER_USER):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/projects",
                data=json.dumps({"name": f"Scale {n}"}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    created.append(json.loads(resp.read())["id"])
            except Exception as exc:
                errors.append(repr(exc))

    try:
        deadline = time.monotonic() + 60
        while True:  # gunicorn answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()[-3000:]
                time.sleep(0.5)
        for name in ("w1", "w2"):  # SIGTERM before Celery installs its handlers would just kill it
            while "ready." not in (tmp_path / f"{name}.log").read_text():
                assert time.monotonic() < deadline + 60, (tmp_path / f"{name}.log").read_text()[-3000:]
                time.sleep(0.5)
        clients = [threading.Thread(target=client, args=(t,)) for t in tokens]
        for t in clients:
            t.start()
        time.sleep(3)
        procs["w1"].send_signal(signal.SIGTERM)  # a rolling update: finish the step, release, exit
        assert procs["w1"].wait(60) == 0, (tmp_path / "w1.log").read_text()[-3000:]
        procs["w1"] = _worker(env, tmp_path, "w1")
        procs["w2"].send_signal(signal.SIGKILL)  # a node lost: its leases expire, another worker goes on
        procs["w2"].wait(10)
        procs["w2"] = _worker(env, tmp_path, "w2")
        for t in clients:
            t.join(120)
        assert not errors, errors
        assert len(created) == USERS * PER_USER
        deadline = time.monotonic() + 240
        while Project.objects.filter(pk__in=created).exclude(status="RUNNING").exists():
            assert time.monotonic() < deadline, list(
                Project.objects.filter(pk__in=created).exclude(status="RUNNING").values("status")
            )
            time.sleep(1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    creates = {
        key: n
        for key, n in kubesim.stats()["by_object"].items()
        if key.startswith("create ") and any(f" {ns}/" in key for ns in namespaces)
    }
    assert creates, "nothing was created on the cluster"
    assert [key for key, n in creates.items() if n > 1] == []  # no object created twice
    transitions = Counter(
        ResourceEvent.objects.filter(project_id__in=created).values_list("resource_id", "to_status")
    )
    assert [key for key, n in transitions.items() if n > 1] == []  # no step recorded twice
