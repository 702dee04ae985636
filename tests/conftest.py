import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from rest_framework.test import APIClient

from core.audit import SYSTEM
from tests.factories import KubeconfigFactory, UserFactory
from userconfig import services as userconfig_services

# Kicks sent by services during tests go to a queue of this test session, purged at the end.
os.environ.setdefault("CELERY_QUEUE", f"tenter-test-{uuid.uuid4().hex[:8]}")
# kubesim listens on 127.0.0.1: the tests allow loopback explicitly (production allows nothing private).
# pytest-django has loaded the settings before this file, so an egress policy left unset in the
# environment is also set for this process's settings, for the session (see _loopback_egress).
LOOPBACK = "127.0.0.0/8"
EGRESS_UNSET = [
    key for key in ("KUBE_EGRESS_ALLOW_CIDRS", "GITHUB_EGRESS_ALLOW_CIDRS") if key not in os.environ
]
for key in EGRESS_UNSET:  # and for the processes tests start (fakegithub for GITHUB_)
    os.environ[key] = LOOPBACK
# Rate limits (API throttles, sign-in attempts) count in the cache: a fresh key prefix per test session
# (the environment, for processes tests start; the settings are already loaded in this one, see below).
CACHE_KEY_PREFIX = os.environ.setdefault("CACHE_KEY_PREFIX", f"tenter-test-{uuid.uuid4().hex[:8]}")

pytest_plugins = ["kubesim.testing", "fakegithub.testing"]
WORKER = {"started": False}


@pytest.fixture(autouse=True, scope="session")
def _private_cache_prefix():
    import copy

    from django.conf import settings
    from django.test.utils import override_settings

    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = CACHE_KEY_PREFIX
    with override_settings(CACHES=caches):
        yield


@pytest.fixture(autouse=True, scope="session")
def _loopback_egress():
    """`pytest` run without scripts/devenv.py: allow loopback (kubesim, fakegithub) for the session."""
    from django.test.utils import override_settings

    with override_settings(**{key: [LOOPBACK] for key in EGRESS_UNSET}):
        yield


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Test users' passwords are hashed with a fast hasher (PBKDF2's million rounds cost a quarter of a
    second of CPU per user created or signed in); the production hashers still check what they made."""
    from django.conf import settings
    from django.test.utils import override_settings

    fast = "django.contrib.auth.hashers.MD5PasswordHasher"
    with override_settings(PASSWORD_HASHERS=[fast, *settings.PASSWORD_HASHERS]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _purge_test_queue():
    yield
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(app.conf.task_default_queue)
    except Exception:  # nothing was ever sent, or the broker is gone
        pass


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def kubeconfig(user):
    return KubeconfigFactory(user=user)


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def anon():
    return APIClient()


QUIESCE_SECONDS = 3.0  # at most this long for the steps in flight at the end of a test


def quiesce() -> None:
    """Park every resource so the session's worker stops touching the database before the test's
    tables are flushed (TRUNCATE would otherwise deadlock with a step in flight)."""
    from datetime import timedelta

    from django.utils import timezone

    from projects.models import ProjectTask
    from sandboxes.models import Database, Sandbox

    if not WORKER["started"]:
        return
    models = (Sandbox, Database, ProjectTask)
    deadline = time.monotonic() + QUIESCE_SECONDS
    while True:
        # No row is due any more (parked again: a step that just finished may have rescheduled its row),
        # then wait while a step is in flight: a row still under a live lease.
        later = timezone.now() + timedelta(days=1)
        for model in models:
            model.objects.update(next_attempt_at=later)
        now = timezone.now()
        busy = any(m.objects.filter(lease_token__isnull=False, locked_until__gt=now).exists() for m in models)
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    # A step still in flight after that (a hung cluster call) loses its lease: its result is dropped.
    for model in models:
        model.objects.filter(lease_token__isnull=False).update(lease_token=None)


@pytest.fixture
def cluster_user(transactional_db, kubesim, kube_namespace):
    user = UserFactory()
    userconfig_services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace), actor=SYSTEM)
    yield user
    quiesce()


@pytest.fixture
def cluster_api(cluster_user):
    client = APIClient()
    client.force_authenticate(cluster_user)
    return client


def _purge() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(app.conf.task_default_queue)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker) -> Iterator[Any]:
    """One real worker for the session; it consumes this test session's own queue."""
    from config.celery import app

    with django_db_blocker.unblock():
        _purge()
        WORKER["started"] = True
        with start_worker(
            app,
            pool="threads",
            concurrency=4,
            perform_ping_check=False,
            shutdown_timeout=10,
            loglevel="WARNING",
        ) as worker:
            yield worker
        # The worker's threads are gone but their database connections are not: close them so the
        # test database can be dropped at the end of the session.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def beat(celery_worker) -> Iterator[None]:
    """What celery beat does for the sweeps, at a test-friendly pace."""
    from config.celery import app

    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            for name in (
                "reconcile.sweep_sandboxes",
                "reconcile.sweep_databases",
                "reconcile.sweep_project_tasks",
            ):
                app.send_task(name, expires=2)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    quiesce()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    from sandboxes.models import Database, Sandbox

    fields = (
        "k8s_name",
        "status",
        "status_reason",
        "attempts",
        "last_error",
        "next_attempt_at",
        "locked_until",
    )
    rows = [*Sandbox.objects.values(*fields), *Database.objects.values(*fields)]
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; resources: {rows}")
