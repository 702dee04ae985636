"""One tenant cannot starve the others: a user whose API server answers slowly and then fails, with a
dozen sandboxes to create, shares the workers with a user on a healthy cluster, whose new sandbox
still reaches RUNNING in about its usual time. Real Celery worker (4 threads), real kubesim, and a
slow fake API server on 127.0.0.1 for the noisy user."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from core.audit import SYSTEM
from projects.models import Project
from reconcile import engine
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
        type(self).calls += 1
        time.sleep(SLOW_SECONDS)
        return self._send(
            500, {"kind": "Status", "status": "Failure", "code": 500, "reason": "InternalError"}
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
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
    userconfig_services.kubeconfig_save(user=noisy, text=_kubeconfig(slow_server, "noisy"), actor=SYSTEM)
    wait_for(
        lambda: UserConfig.objects.filter(user=noisy, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK),
        what="the noisy user's check passes",
    )
    for _ in range(12):
        SandboxFactory(project__owner=noisy, k8s_namespace="noisy", k8s_server="127.0.0.1")
    wait_for(lambda: SlowApiServer.calls >= 2, what="the workers are busy with the slow cluster")

    started = time.monotonic()
    body = cluster_api.post("/api/v1/projects", {"name": "Quiet"}, format="json").json()
    wait_for(
        lambda: Project.objects.filter(pk=body["id"], status="RUNNING").exists(),
        timeout=30,
        what="the quiet user's project RUNNING",
    )
    took = time.monotonic() - started
    # Without per-user caps this waits for 12 sandboxes x (3 requests x 4 s): minutes. The slow
    # cluster holds at most 2 leases at a time and never more than one slow request per batch.
    assert took < 30
    noisy_rows = Sandbox.objects.filter(project__owner=noisy)
    assert noisy_rows.filter(status=ResourceStatus.CREATING).count() == 12  # still trying, not ERROR
    assert noisy_rows.filter(locked_until__isnull=False, lease_token__isnull=False).count() <= 2


def test_the_claim_takes_at_most_the_cap_of_one_owners_rows_and_interleaves_owners():
    a, b = UserFactory(), UserFactory()
    for _ in range(5):
        SandboxFactory(project__owner=a)
    quiet = SandboxFactory(project__owner=b)
    with override_settings(RECONCILE_USER_CONCURRENCY=2):
        first = engine.claim(Sandbox, limit=10)
        assert [row.project.owner_id for row in first].count(a.pk) == 2
        assert quiet.pk in [row.pk for row in first[:2]]  # each owner's oldest row comes first
        second = engine.claim(Sandbox, limit=10)
        assert second == []  # a's two leases are still held: its other rows wait, holding nothing
