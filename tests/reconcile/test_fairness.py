"""One tenant cannot starve the others: a user whose API server answers slowly and then fails, with a
dozen sandboxes to create, shares the workers with a user on a healthy cluster, whose new sandbox
still reaches RUNNING in about its usual time. Real Celery worker (4 threads), real kubesim, and a
slow fake API server on 127.0.0.1 for the noisy user."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from core.audit import SYSTEM, Actor
from projects.models import Project
from projects.services import project_create
from reconcile import engine, runner
from sandboxes.models import ResourceStatus, Sandbox
from tests.factories import SandboxFactory, UserFactory
from tests.reconcile.conftest import wait_for
from userconfig import services as userconfig_services
from userconfig.models import CheckStatus, ConfigKey, UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLOW_SECONDS = 4.0


class SlowApiServer(BaseHTTPRequestHandler):
    """Answers the kubeconfig check at once (version, access reviews: allowed), then is slow and fails
    on everything a reconcile step asks."""

    calls = 0
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/version"):
            return self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if "selfsubjectaccessreviews" in self.path:
            return self._send(201, {"kind": "SelfSubjectAccessReview", "status": {"allowed": True}})
        cls = type(self)
        with cls.lock:
            cls.calls += 1
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(SLOW_SECONDS)
        with cls.lock:
            cls.in_flight -= 1
        return self._send(
            500, {"kind": "Status", "status": "Failure", "code": 500, "reason": "InternalError"}
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class SlowServer:
    url: str
    handler: type[SlowApiServer]  # its own counters: requests of an earlier test's server don't count


@pytest.fixture
def slow_server():
    handler = type("Slow", (SlowApiServer,), {"calls": 0, "in_flight": 0, "max_in_flight": 0})
    handler.lock = threading.Lock()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SlowServer(f"http://127.0.0.1:{server.server_address[1]}", handler)
    server.shutdown()


def _kubeconfig(server: str, namespace: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: slow\n"
        f"clusters: [{{name: slow, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: slow, user: {token: slow-token}}]\n"
        f"contexts: [{{name: slow, context: {{cluster: slow, user: slow, namespace: {namespace}}}}}]\n"
    )


@override_settings(RECONCILE_USER_CONCURRENCY=2)
def test_a_slow_failing_cluster_does_not_starve_another_users_sandbox(cluster_api, beat, slow_server):
    noisy = UserFactory()
    userconfig_services.kubeconfig_save(user=noisy, text=_kubeconfig(slow_server.url, "noisy"), actor=SYSTEM)
    wait_for(
        lambda: UserConfig.objects.filter(user=noisy, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK),
        what="the noisy user's check passes",
    )
    for _ in range(12):
        SandboxFactory(project__owner=noisy, k8s_namespace="noisy", k8s_server="127.0.0.1")
    wait_for(lambda: slow_server.handler.calls >= 2, what="the workers are busy with the slow cluster")

    started = time.monotonic()
    body = cluster_api.post("/api/v1/projects", {"name": "Quiet"}, format="json").json()
    wait_for(
        lambda: Project.objects.filter(pk=body["id"], status="RUNNING").exists(),
        timeout=30,
        what="the quiet user's project RUNNING",
    )
    took = time.monotonic() - started
    # Without per-user lanes and fair claims this waits for 12 sandboxes x (3 requests x 4 s): minutes.
    assert took < 30
    noisy_rows = Sandbox.objects.filter(project__owner=noisy)
    assert noisy_rows.filter(status=ResourceStatus.CREATING).count() == 12  # still trying, not ERROR


def _noisy_user(slow_server: SlowServer) -> object:
    noisy = UserFactory()
    userconfig_services.kubeconfig_save(user=noisy, text=_kubeconfig(slow_server.url, "noisy"), actor=SYSTEM)
    wait_for(
        lambda: UserConfig.objects.filter(user=noisy, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK),
        what="the noisy user's check passes",
    )
    return noisy


@override_settings(RECONCILE_USER_CONCURRENCY=2, RECONCILE_ACT_CONCURRENCY=8, RECONCILE_KICK_ON_COMMIT=False)
def test_one_batch_spends_at_most_the_cap_of_lanes_on_a_slow_cluster_and_serves_the_others_beside_it(
    cluster_user, kube_namespace, celery_worker, slow_server
):
    noisy = _noisy_user(slow_server)
    for _ in range(12):
        SandboxFactory(project__owner=noisy, k8s_namespace="noisy", k8s_server="127.0.0.1")
    quiet = project_create(owner=cluster_user, name="Quiet", actor=Actor(user=cluster_user))
    assert runner.reconcile(Sandbox, limit=50) == 13  # everything due, in one batch
    # Two lanes on the slow cluster, one slow request each; after a slow failure the owner's other
    # rows in the batch back off at once instead of queueing 4 s requests behind it.
    assert slow_server.handler.max_in_flight == 2
    assert slow_server.handler.calls == 2
    noisy_rows = Sandbox.objects.filter(project__owner=noisy)
    assert noisy_rows.filter(status=ResourceStatus.CREATING, attempts=1).count() == 12
    # the quiet user's sandbox had its own lane: its objects were applied in the same batch
    assert Sandbox.objects.get(project=quiet).status == ResourceStatus.STARTING


def test_the_claim_serves_every_owner_before_giving_one_owner_more_than_the_cap():
    a, b = UserFactory(), UserFactory()
    busy = [SandboxFactory(project__owner=a) for _ in range(5)]
    quiet = SandboxFactory(project__owner=b)
    with override_settings(RECONCILE_USER_CONCURRENCY=2):
        first = engine.claim(Sandbox, limit=3)
        # room for three: a's two oldest and b's one, not a's three oldest
        assert [row.project.owner_id for row in first].count(a.pk) == 2
        assert quiet.pk in [row.pk for row in first[:2]]  # each owner's oldest row comes first
        later = SandboxFactory(project__owner=b)
        second = engine.claim(Sandbox, limit=1)
        assert [row.pk for row in second] == [later.pk]  # a holds its cap: b first, though a's rows are older
        third = engine.claim(Sandbox, limit=10)
        # nobody else waits: a's burst takes the spare room (a work-conserving cap)
        assert sorted(row.pk for row in third) == sorted(row.pk for row in busy[2:])
