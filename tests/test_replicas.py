"""Safe with any number of replicas (issue 18): two beats schedule each periodic job once per period, even
when the leader dies; migrations never run from two processes at once; a stopping worker releases the rows
it claimed but has not reached."""

from __future__ import annotations

import io
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
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.management.commands.migrate_locked import MIGRATE_LOCK_KEY
from reconcile import engine
from reconcile.engine import Outcome
from sandboxes.models import ResourceStatus, Sandbox
from tests.factories import SandboxFactory

ROOT = Path(__file__).resolve().parent.parent
SWEEP = 1.0  # the period of the due-row and deadline sweeps in the beat test
TTL = 3.0  # the leader lock's expiry in the beat test
SENDS = 3  # sends of each short-period sweep seen while both beats run, and again after the takeover
WAIT = 60.0  # at most this long for each of those (a busy machine starts a beat slowly)
SHORT = (  # the periodic tasks with the period SWEEP in the beats of the test (its environment below)
    "reconcile.sweep_sandboxes",
    "reconcile.sweep_databases",
    "reconcile.sweep_project_tasks",
    "reconcile.sweep_deadlines",
)


def _beat(tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115  # closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
         "--schedule", str(tmp_path / f"{name}-schedule")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _periods() -> dict[str, float]:
    """Each periodic task's period in the beats of the test (the test's environment below)."""
    periods = {e["task"]: float(e["schedule"]) for e in settings.CELERY_BEAT_SCHEDULE.values()}
    for task in SHORT:
        periods[task] = SWEEP
    return periods


def _sends(client: redis.Redis, queue: str) -> dict[str, list[float]]:
    """When each periodic task was sent, from the messages left in the queue (every periodic task's
    `expires` option is twice its period after the send)."""
    periods = _periods()
    out: dict[str, list[float]] = {}
    for raw in client.lrange(queue, 0, -1):
        headers = json.loads(raw)["headers"]
        sent = datetime.fromisoformat(headers["expires"]).timestamp() - 2 * periods[headers["task"]]
        out.setdefault(headers["task"], []).append(sent)
    return {task: sorted(times) for task, times in out.items()}


def _until(predicate, what: str, logs) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"no {what} within {WAIT:.0f} s: {logs()}"
        time.sleep(0.2)
    return value


@pytest.mark.e2e
def test_two_beats_send_each_periodic_job_once_per_period_across_a_takeover(tmp_path):
    queue = f"tenter-beat-test-{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        CELERY_QUEUE=queue,
        RECONCILE_SWEEP_SECONDS=str(SWEEP),
        DEADLINE_SWEEP_SECONDS=str(SWEEP),
        BEAT_LEADER_TTL_SECONDS=str(TTL),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    lock_key = f"tenter:beat-leader:{queue}"
    started_at = time.time()
    beats = {"a": _beat(tmp_path, "a", env), "b": _beat(tmp_path, "b", env)}

    def logs() -> str:
        return "".join((tmp_path / f"{n}.log").read_text()[-3000:] for n in beats)

    def sent_since(since: float) -> dict[str, int]:
        sends = _sends(client, queue)
        return {task: len([t for t in sends.get(task, []) if t > since]) for task in SHORT}

    try:
        # both beats tick (each would send every job), then each short-period job goes out a few times
        _until(lambda: logs().count("beat: Starting...") == 2, "start of both beats", logs)
        both_up = time.time()
        _until(lambda: min(sent_since(both_up).values()) >= SENDS, f"{SENDS} sends of each sweep", logs)
        holder = _until(lambda: client.get(lock_key), "holder of the leader lock", logs)
        leader_pid = int(holder.decode().split(":")[1])
        (leader,) = [name for name, p in beats.items() if p.pid == leader_pid]
        beats[leader].send_signal(signal.SIGKILL)  # dies holding the lock: the other takes over on expiry
        beats[leader].wait(10)
        killed_at = time.time()
        survivor = next(p for name, p in beats.items() if name != leader)
        # the survivor takes the lock once it expires and keeps the sweeps going
        _until(
            lambda: int((client.get(lock_key) or b"-:0").decode().split(":")[1]) == survivor.pid,
            "takeover by the survivor",
            logs,
        )
        _until(
            lambda: min(sent_since(killed_at + TTL).values()) >= SENDS,
            f"{SENDS} sends of each sweep after the takeover",
            logs,
        )
        assert survivor.poll() is None
    finally:
        for p in beats.values():
            if p.poll() is None:
                p.terminate()
                p.wait(15)
    ran_for = time.time() - started_at
    sends = _sends(client, queue)
    client.delete(queue, lock_key, f"{lock_key}:last-runs")
    periods = _periods()
    for task, times in sends.items():
        period = periods[task]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # once per period: never two sends of one job within a fraction of its period (two uncoordinated
        # beats would send each job twice per period, at nearly the same moment; a takeover that repeated
        # the last runs would send early)
        assert all(gap > period * 0.6 for gap in gaps), (task, gaps)
        assert len(times) <= ran_for / period + 2, (task, len(times), ran_for)


@pytest.mark.django_db(transaction=True)
def test_migrate_locked_waits_for_the_migration_lock_holder():
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    holder = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        dbname=db["NAME"],
    )
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
        # one that cannot wait that long gives up, saying why (this process's own database session)
        out = io.StringIO()
        with pytest.raises(CommandError, match="Another process held the migration lock"):
            call_command("migrate_locked", interactive=False, lock_timeout=0, stdout=out)
        assert "Another process is migrating" in out.getvalue()
        # another process waits while the lock is held, then migrates once it is released
        waiting = subprocess.Popen(
            [sys.executable, "manage.py", "migrate_locked", "--noinput", "--lock-timeout", "60"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert waiting.stdout is not None
            first = waiting.stdout.readline()  # printed once it has found the lock taken
            assert "Another process is migrating" in first, first + waiting.stderr.read()
            holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
            rest, errors = waiting.communicate(timeout=120)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        assert waiting.returncode == 0, first + rest + errors
        assert "No migrations to apply" in rest
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
