"""Safe with any number of replicas (issue 18): two beats schedule each periodic job once per period, even
when the leader dies; migrations never run from two processes at once; a stopping worker releases the rows
it claimed but has not reached."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from core.management.commands.migrate_locked import MIGRATE_LOCK_KEY
from reconcile import engine
from reconcile.engine import Outcome
from sandboxes.models import ResourceStatus, Sandbox
from tests.factories import SandboxFactory

ROOT = Path(__file__).resolve().parent.parent
SWEEP = 2.0  # the sweeps' period in the beat test
TTL = 5.0  # the leader lock's expiry in the beat test
RUN_SECONDS = float(os.environ.get("BEAT_TEST_SECONDS", "60"))


def _beat(tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
         "--schedule", str(tmp_path / f"{name}-schedule")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _sends(client: redis.Redis, queue: str) -> dict[str, list[float]]:
    """When each periodic task was sent, from the messages left in the queue (the sweeps' `expires`
    option is a fixed time after the send)."""
    expires_after = {e["task"]: e["options"]["expires"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    expires_after["reconcile.sweep_sandboxes"] = expires_after["reconcile.sweep_databases"] = SWEEP * 2
    out: dict[str, list[float]] = {}
    for raw in client.lrange(queue, 0, -1):
        headers = json.loads(raw)["headers"]
        sent = datetime.fromisoformat(headers["expires"]).timestamp() - expires_after[headers["task"]]
        out.setdefault(headers["task"], []).append(sent)
    return {task: sorted(times) for task, times in out.items()}


@pytest.mark.e2e
def test_two_beats_send_each_periodic_job_once_per_period_across_a_takeover(tmp_path):
    queue = f"tenter-beat-test-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        CELERY_QUEUE=queue,
        RECONCILE_SWEEP_SECONDS=str(SWEEP),
        BEAT_LEADER_TTL_SECONDS=str(TTL),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    lock_key = f"tenter:beat-leader:{queue}"
    beats = {"a": _beat(tmp_path, "a", env), "b": _beat(tmp_path, "b", env)}
    try:
        time.sleep(RUN_SECONDS / 2)
        holder, deadline = client.get(lock_key), time.monotonic() + 20
        while holder is None and time.monotonic() < deadline:  # under load a stalled leader may lapse
            time.sleep(0.2)
            holder = client.get(lock_key)
        logs = "".join((tmp_path / f"{n}.log").read_text()[-3000:] for n in beats)
        assert holder, "no beat holds the leader lock: " + logs
        leader_pid = int(holder.decode().split(":")[1])
        (leader,) = [name for name, p in beats.items() if p.pid == leader_pid]
        beats[leader].send_signal(signal.SIGKILL)  # dies holding the lock: the other takes over on expiry
        beats[leader].wait(10)
        killed_at = time.time()
        time.sleep(RUN_SECONDS / 2)
        survivor = next(p for name, p in beats.items() if name != leader)
        assert survivor.poll() is None
        assert int(client.get(lock_key).decode().split(":")[1]) == survivor.pid
    finally:
        for p in beats.values():
            if p.poll() is None:
                p.terminate()
                p.wait(15)
    sends = _sends(client, queue)
    client.delete(queue, lock_key, f"{lock_key}:last-runs")
    periods = {e["task"]: float(e["schedule"]) for e in settings.CELERY_BEAT_SCHEDULE.values()}
    periods["reconcile.sweep_sandboxes"] = periods["reconcile.sweep_databases"] = SWEEP
    assert set(sends) >= {
        "reconcile.sweep_sandboxes",
        "reconcile.sweep_databases",
        "reconcile.sweep_deadlines",
    }
    for task, times in sends.items():
        period = periods[task]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # once per period: never two sends of one job within a fraction of its period (two uncoordinated
        # beats would send each job twice per period, at nearly the same moment)
        assert all(gap > period * 0.6 for gap in gaps), (task, gaps)
        assert len(times) <= RUN_SECONDS / period + 2, (task, len(times))
    # and the survivor kept the sweeps going after the takeover
    after = [t for t in sends["reconcile.sweep_sandboxes"] if t > killed_at + TTL + 1]
    assert len(after) >= (RUN_SECONDS / 2 - TTL - 2) / SWEEP / 2


@pytest.mark.django_db(transaction=True)
def test_migrate_locked_waits_for_the_migration_lock_holder():
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings")
    holder = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        dbname=db["NAME"],
    )
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
        blocked = subprocess.run(
            [sys.executable, "manage.py", "migrate_locked", "--noinput", "--lock-timeout", "2"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert blocked.returncode != 0
        assert "Another process is migrating" in blocked.stdout
        assert "held the migration lock" in blocked.stderr
        holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate_locked", "--noinput", "--lock-timeout", "30"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No migrations to apply" in done.stdout
    finally:
        holder.close()


@pytest.mark.django_db
def test_a_stopping_worker_finishes_its_step_and_releases_the_rows_it_has_not_reached(user):
    ids = [SandboxFactory(project__owner=user).pk for _ in range(4)]
    Sandbox.objects.filter(pk__in=ids).update(status=ResourceStatus.CREATING)
    rows = engine.claim(Sandbox, ids=ids)
    assert len(rows) == 4
    acted = []

    def step(row):
        acted.append(row.pk)
        engine.begin_shutdown()  # SIGTERM arrives during the first step
        return Outcome(retry_in=30)

    try:
        assert engine.run_batch(Sandbox, step, rows) == 1
        assert engine.claim(Sandbox, ids=ids) == []  # a stopping worker claims nothing more
    finally:
        engine.clear_shutdown()
    assert acted == [rows[0].pk]
    first = Sandbox.objects.get(pk=rows[0].pk)
    assert first.lease_token is None and first.next_attempt_at is not None  # its step was recorded
    rest = Sandbox.objects.filter(pk__in=[r.pk for r in rows[1:]])
    assert all(r.locked_until is None and r.lease_token is None for r in rest)  # free for another worker
    assert len(engine.claim(Sandbox, ids=[r.pk for r in rows[1:]])) == 3


def test_the_stop_flag_of_a_pool_child_is_its_parent_s():
    """Prefork children learn of the stop from a flag named after the worker's main process."""
    code = (
        "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "django.setup(); from reconcile import engine; print(engine.shutting_down())"
    )
    try:
        flag = engine._stop_flag(os.getpid())
        Path(flag).unlink(missing_ok=True)
        child = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert child.stdout.strip() == "False"
        Path(flag).touch()  # what begin_shutdown writes in the main process (here: this test's process)
        child = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert child.stdout.strip() == "True"
    finally:
        Path(engine._stop_flag(os.getpid())).unlink(missing_ok=True)
