import os
import uuid

import pytest
from rest_framework.test import APIClient

from projects.audit import SYSTEM
from tests.factories import KubeconfigFactory, UserFactory
from userconfig import services as userconfig_services

# Kicks sent by services during tests go to a queue of this test session, purged at the end.
os.environ.setdefault("CELERY_QUEUE", f"tenter-test-{uuid.uuid4().hex[:8]}")

pytest_plugins = ["kubesim.testing"]


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


@pytest.fixture
def cluster_user(transactional_db, kubesim, kube_namespace):
    user = UserFactory()
    userconfig_services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace), actor=SYSTEM)
    return user


@pytest.fixture
def cluster_api(cluster_user):
    client = APIClient()
    client.force_authenticate(cluster_user)
    return client
