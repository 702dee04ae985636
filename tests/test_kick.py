"""Kicks cannot hurt a request: with the broker refusing connections, or on a network path that
swallows everything, an API create still answers 202 at once, and the row waits for the sweep.

Real Redis (for the healthy case), real sockets for the broken ones; the only timing assertion in the
suite, with a generous bound.
"""

import socket
import time
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from core import kick as kicks
from sandboxes.models import TRANSITIONAL, Sandbox
from tests.factories import KubeconfigFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the kick is sent on a real commit

GENEROUS_BOUND = 2.0  # seconds; the request itself waits on no broker at all


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connections are refused
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that accepts connections (the kernel's backlog) and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def owner_api() -> APIClient:
    user = UserFactory()
    KubeconfigFactory(user=user)
    client = APIClient()
    client.force_authenticate(user)
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture(autouse=True)
def _settle() -> Iterator[None]:
    yield
    # Let the kick thread give up on the dead broker before the next test (the settings fixture
    # restores the URL, which also clears the thread's back-off).
    kicks.dispatcher.wait_idle(10)


def _create_three(api: APIClient) -> list[str]:
    ids = []
    for i in range(3):
        started = time.monotonic()
        response = api.post("/api/v1/projects", {"name": f"Shop {i}"}, format="json")
        elapsed = time.monotonic() - started
        assert response.status_code == 202, response.content
        assert elapsed < GENEROUS_BOUND, f"the create waited {elapsed:.2f}s on the broker"
        ids.append(response.json()["sandboxes"][0]["id"])
    return ids


def _waiting_for_the_sweep(ids: list[str]) -> int:
    """The rows whose intent is stored for a worker to find. (Not "untouched": the in-process worker of
    earlier tests, whose broker still works, claims whatever is due when one of its own kicks runs.)"""
    return Sandbox.objects.filter(pk__in=ids, status__in=TRANSITIONAL).count()


@pytest.mark.parametrize("broker", ["refusing", "silent"])
def test_a_create_answers_at_once_when_the_broker_cannot_be_reached(owner_api, settings, request, broker):
    port = request.getfixturevalue("closed_port" if broker == "refusing" else "silent_port")
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    with kicks.stats_delta() as delta:
        ids = _create_three(owner_api)
        assert kicks.dispatcher.wait_idle(15)
    # (the in-process worker of earlier tests may kick rows of its own meanwhile: at least our three)
    # a kick made while another for the same task still waits in the queue is coalesced with it
    assert delta.queued + delta.coalesced >= 3
    assert delta.sent == 0
    assert delta.failed >= 1  # tried in the background, and gave up
    # after a failure the thread backs off instead of waiting: every kick given up on (or joined to one
    # that was), none left waiting
    assert delta.failed + delta.dropped + delta.coalesced >= delta.queued
    assert _waiting_for_the_sweep(ids) == 3


def test_a_healthy_broker_still_gets_the_kick(owner_api):
    with kicks.stats_delta() as delta:
        ids = _create_three(owner_api)
        assert kicks.dispatcher.wait_idle(10)
    # (the in-process worker of earlier tests may send follow-ups of its own meanwhile: at least ours)
    assert delta.sent >= 1 and delta.failed == 0
    assert delta.sent + delta.coalesced >= 3  # each kick went out, or joined one that had
    assert len(ids) == 3


def test_a_full_queue_drops_the_kick_without_blocking(settings, silent_port):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"
    dispatcher = kicks.Dispatcher()
    settings.KICK_QUEUE_SIZE = 2
    started = time.monotonic()
    # (a task whose kicks are not coalesced: every one of them takes a place in the queue)
    accepted = [dispatcher.submit("reconcile.projecttask", str(i)) for i in range(50)]
    assert time.monotonic() - started < GENEROUS_BOUND
    assert accepted.count(False) >= 45  # one may be in the thread's hands, two in the queue
    assert dispatcher.stats.dropped == accepted.count(False)
    assert dispatcher.wait_idle(15)
