"""The egress policy (SSRF defence), generic user-visible errors, TLS failures, the check's budget and
rate limit.

Traffic goes only to 127.0.0.0/8: refusals of other addresses are checked before any connection,
and "no connection" is proven with a listening socket on 127.0.0.1 that records accepts.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from core.audit import SYSTEM, Actor
from kubesim import tls
from projects.services import project_create
from reconcile import checks, runner
from reconcile.kube.client import Kube
from reconcile.kube.egress import EgressPolicy, EgressRefused, literal_address, why_refused
from reconcile.kube.errors import KubeCredentials, KubeEgressRefused, KubeError
from sandboxes.models import Sandbox
from tests.factories import KUBECONFIG_TEMPLATE, UserFactory
from userconfig import services
from userconfig.models import CheckStatus, ConfigKey, UserConfig

LOOPBACK = EgressPolicy.from_cidrs("127.0.0.0/8")
NOTHING = EgressPolicy()
MARKER = "TENTER_MARKER_7f3a9c"


def kubeconfig_for(server: str, namespace: str = "ns-egress", ca_pem: bytes | None = None) -> str:
    data = yaml.safe_load(KUBECONFIG_TEMPLATE.format(namespace=namespace))
    data["clusters"][0]["cluster"]["server"] = server
    if ca_pem is not None:
        data["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump(data, sort_keys=False)


# --- the policy itself (no network) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),  # AWS's IPv6 metadata address (ULA)
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.100.100.200", "private"),  # shared address space (Alibaba's metadata)
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "private"),  # documentation
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_addresses_refused_by_default(address: str, kind: str | None) -> None:
    assert why_refused(ipaddress.ip_address(address)) == kind
    assert NOTHING.allowed(ipaddress.ip_address(address)) is (kind is None)


def test_allowed_networks_open_only_themselves() -> None:
    policy = EgressPolicy.from_cidrs("10.0.0.0/8, 127.0.0.0/8")
    assert policy.allowed(ipaddress.ip_address("10.20.30.40"))
    assert policy.allowed(ipaddress.ip_address("::ffff:10.20.30.40"))
    assert policy.allowed(ipaddress.ip_address("127.0.0.1"))
    assert not policy.allowed(ipaddress.ip_address("192.168.0.1"))
    assert not policy.allowed(ipaddress.ip_address("169.254.169.254"))
    assert not policy.allowed(ipaddress.ip_address("::1"))
    with pytest.raises(ValueError):
        EgressPolicy.from_cidrs("10.0.0.0/33")


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("[::1]", "::1")],
)
def test_literal_addresses_in_any_spelling(spelling: str, address: str) -> None:
    assert literal_address(spelling) == ipaddress.ip_address(address)
    assert literal_address("k8s.example.test") is None


def test_every_resolved_address_is_vetted() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(EgressRefused, match="private"):
        policy.vetted_addresses("rebind.example.test", 443)
    public = EgressPolicy(resolver=lambda host, port: ["8.8.8.8"])
    assert public.vetted_addresses("dns.example.test", 443) == ["8.8.8.8"]


# --- save time: a 400 with a code, before anything is stored -------------------------------------

REFUSED_SERVERS = [
    "https://127.0.0.1:6443",
    "http://127.0.0.1:8080/api",
    "https://10.0.0.5:6443",
    "https://192.168.1.10",
    "http://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/",
    "https://[::1]:6443",
    "https://[::ffff:127.0.0.1]:6443",
    "http://2130706433:8080",
    "http://0x7f.1:8080",
    "https://localhost:6443",
    "https://api.localhost",
    "http://metadata.google.internal/computeMetadata/v1/",
    "https://user:pass@k8s.example.test:6443",
]


@pytest.mark.django_db
@pytest.mark.parametrize("server", REFUSED_SERVERS)
def test_save_refuses_addresses_the_policy_refuses(api, user, settings, server: str) -> None:
    settings.KUBE_EGRESS_ALLOW_CIDRS = []
    response = api.put("/api/v1/me/kubeconfig", {"kubeconfig": kubeconfig_for(server)}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "egress_refused"
    assert "refused by the egress policy" in response.json()["message"]
    assert not UserConfig.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_save_accepts_allowed_networks_and_names(api, user, settings) -> None:
    settings.KUBE_EGRESS_ALLOW_CIDRS = ["10.0.0.0/8"]
    for server in ("https://10.0.0.5:6443", "https://k8s.example.test:6443", "https://8.8.8.8"):
        response = api.put("/api/v1/me/kubeconfig", {"kubeconfig": kubeconfig_for(server)}, format="json")
        assert response.status_code == 200, (server, response.json())


# --- connect time: refused before any connection -------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def accepted(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def mapped(name: str, address: str) -> EgressPolicy:
    """A policy whose resolver maps `name` (no real DNS in tests)."""

    def resolve(host: str, port: int) -> list[str]:
        assert host == name
        return [address]

    return EgressPolicy(resolver=resolve)


def test_the_listener_sees_a_connection_when_allowed(listener) -> None:
    port = listener.getsockname()[1]
    client = Kube(kubeconfig_for(f"http://127.0.0.1:{port}"), read_timeout=0.3, egress=LOOPBACK)
    try:
        with pytest.raises(KubeError):  # the listener never answers: a timeout
            client.version()
    finally:
        client.close()
    time.sleep(0.05)
    assert accepted(listener) >= 1  # so the refusals below are not a listener that cannot count


@pytest.mark.parametrize(
    ("server", "policy"),
    [
        ("http://127.0.0.1:{port}", NOTHING),
        ("https://127.0.0.1:{port}", NOTHING),
        ("http://2130706433:{port}", NOTHING),
        ("http://0x7f.1:{port}", NOTHING),
        ("http://user:pass@127.0.0.1:{port}/", NOTHING),
        ("https://[::ffff:127.0.0.1]:{port}", NOTHING),
        ("http://localhost:{port}", NOTHING),  # /etc/hosts, not DNS
        ("https://innocent.example.test:{port}", mapped("innocent.example.test", "127.0.0.1")),
        ("https://rebind.example.test:{port}", mapped("rebind.example.test", "::ffff:127.0.0.1")),
        ("https://10.0.0.1.nip.example.test:{port}", mapped("10.0.0.1.nip.example.test", "10.0.0.1")),
        ("https://meta.example.test:{port}", mapped("meta.example.test", "169.254.169.254")),
    ],
)
def test_the_gateway_refuses_before_connecting(listener, server: str, policy: EgressPolicy) -> None:
    port = listener.getsockname()[1]
    client = Kube(kubeconfig_for(server.format(port=port)), read_timeout=0.5, egress=policy)
    try:
        with pytest.raises(KubeEgressRefused) as refused:
            client.version()
        with pytest.raises(KubeEgressRefused):
            client.can_i("create", "statefulsets", "apps")
    finally:
        client.close()
    assert refused.value.message.startswith("refused by the egress policy")
    time.sleep(0.05)
    assert accepted(listener) == 0


def test_tls_verifies_the_name_not_the_vetted_address(kubesim, kube_namespace) -> None:
    """The connection goes to the vetted IP, while TLS still checks the kubeconfig's host name."""
    data = yaml.safe_load(kubesim.kubeconfig(kube_namespace))
    port = data["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]

    def via(name: str) -> Kube:
        data["clusters"][0]["cluster"]["server"] = f"https://{name}:{port}"
        allow = EgressPolicy(allow=LOOPBACK.allow, resolver=lambda host, _port: ["127.0.0.1"])
        return Kube(yaml.safe_dump(data), egress=allow)

    good = via("kubernetes")  # a name in kubesim's certificate, resolved by our hook only
    assert good.version().startswith("v1.")
    good.close()
    bad = via("not-in-the-certificate.example.test")
    with pytest.raises(KubeCredentials) as caught:
        bad.version()
    bad.close()
    assert caught.value.message == "TLS verification failed"


def test_redirects_are_not_followed(listener) -> None:
    target = listener.getsockname()[1]
    with fake_apiserver("redirect", location=f"http://127.0.0.1:{target}/version") as server:
        client = Kube(kubeconfig_for(server.url, ca_pem=server.ca_pem), egress=LOOPBACK)
        with pytest.raises(KubeError) as caught:
            client.version()
        client.close()
    assert "not a Kubernetes API server" in str(caught.value)
    time.sleep(0.05)
    assert accepted(listener) == 0


@pytest.mark.django_db
def test_the_check_refuses_at_connect_time(listener, settings) -> None:
    """A stored kubeconfig that slipped past the save-time check (older row, or DNS) is refused by
    the worker's check before any connection, with a clear FAILED result."""
    settings.KUBE_EGRESS_ALLOW_CIDRS = []
    port = listener.getsockname()[1]
    user = UserFactory()
    UserConfig.objects.create(
        user=user,
        key=ConfigKey.KUBECONFIG,
        value=kubeconfig_for(f"https://127.0.0.1:{port}"),
        namespace="ns-egress",
        server=f"https://127.0.0.1:{port}",
        server_host="127.0.0.1",
        check_status=CheckStatus.PENDING,
    )
    status, message = checks.check_kubeconfig(user.pk)
    assert status == CheckStatus.FAILED
    refused = "is refused by the egress policy (loopback address)."
    assert message == f"The cluster address 127.0.0.1:{port} {refused}"
    time.sleep(0.05)
    assert accepted(listener) == 0


# --- nothing the remote end sends reaches a user -------------------------------------------------


class FakeServer:
    def __init__(self, url: str, ca_pem: bytes, requests: list[str]) -> None:
        self.url, self.ca_pem, self.requests = url, ca_pem, requests


MODES = ["text200", "json200", "401", "403", "403sentence", "404", "422", "500", "redirect"]


def _status(code: int, message: str, reason: str = MARKER, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
        "details": details,
    }


def _response(mode: str, location: str) -> tuple[int, dict[str, str], bytes]:
    as_json = {"Content-Type": "application/json"}
    if mode == "text200":
        return 200, {"Content-Type": "text/html"}, f"<html><body>{MARKER} secret page</body></html>".encode()
    if mode == "json200":
        body = {"kind": "Status", "message": MARKER, "gitVersion": MARKER, "status": {"reason": MARKER}}
        return 200, as_json, json.dumps(body).encode()
    if mode == "redirect":
        return 302, {"Location": location, "Content-Type": "text/plain"}, MARKER.encode()
    code = int(mode[:3])
    if mode == "403sentence":
        message = (
            f'statefulsets.apps is forbidden: User "{MARKER}" cannot create resource "statefulsets" in '
            f'API group "apps" in the namespace "{MARKER}"'
        )
        return 403, as_json, json.dumps(_status(403, message)).encode()
    return code, as_json, json.dumps(_status(code, f"{MARKER} says no", name=MARKER, kind=MARKER)).encode()


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests.append(f"{self.command} {self.path}")
        code, headers, body = _response(self.server.mode, self.server.location)
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


class fake_apiserver:
    """An HTTPS server on 127.0.0.1 posing as an API server, answering every request per `mode`."""

    def __init__(self, mode: str, location: str = "http://169.254.169.254/") -> None:
        self.material = tls.generate()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.mode, self.httpd.location, self.httpd.requests = mode, location, []  # type: ignore[attr-defined]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.material.cert_file, self.material.key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        port = self.httpd.server_address[1]
        return FakeServer(f"https://127.0.0.1:{port}", self.material.ca_pem, self.httpd.requests)  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _user_visible(user, project_id: str, sandbox: Sandbox) -> dict[str, str]:
    api = APIClient()
    api.force_authenticate(user)
    user.save()
    web = Client()
    web.force_login(user)
    pages = {
        "api kubeconfig": api.get("/api/v1/me/kubeconfig"),
        "api project": api.get(f"/api/v1/projects/{project_id}"),
        "api projects": api.get("/api/v1/projects"),
        "api events": api.get(f"/api/v1/projects/{project_id}/events"),
        "api sandbox": api.get(f"/api/v1/sandboxes/{sandbox.pk}"),
        "settings page": web.get(reverse("dashboard:settings")),
        "kubeconfig state": web.get(reverse("dashboard:kubeconfig-state")),
        "project list page": web.get(reverse("dashboard:list")),
        "project page": web.get(reverse("dashboard:detail", args=[project_id])),
        "project live": web.get(reverse("dashboard:live", args=[project_id])),
    }
    for name, response in pages.items():
        assert response.status_code == 200, (name, response.status_code)
    return {name: response.content.decode() for name, response in pages.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("mode", MODES)
def test_remote_bytes_never_reach_a_user(mode: str, settings) -> None:
    settings.RECONCILE_KICK_ON_COMMIT = False
    assert "127.0.0.0/8" in settings.KUBE_EGRESS_ALLOW_CIDRS  # the test's own server is allowed
    with fake_apiserver(mode) as server:
        user = UserFactory()
        services.kubeconfig_save(
            user=user, text=kubeconfig_for(server.url, ca_pem=server.ca_pem), actor=SYSTEM
        )
        status, message = checks.check_kubeconfig(user.pk)
        assert status in (CheckStatus.FAILED, CheckStatus.UNREACHABLE, CheckStatus.OK)
        assert message and MARKER not in message

        # Make the reconciler talk to the server whatever the check said.
        UserConfig.objects.filter(user=user).update(check_status=CheckStatus.OK)
        project = project_create(owner=user, name="Marked", actor=Actor(user=user))
        sandbox = Sandbox.objects.get(project=project)
        for _ in range(2):
            Sandbox.objects.filter(pk=sandbox.pk).update(next_attempt_at=None, locked_until=None)
            runner.reconcile(Sandbox, ids=[sandbox.pk])
        sandbox.refresh_from_db()
        assert server.requests, "the fake server was never asked"
        for value in (sandbox.status_reason, sandbox.last_error):
            assert MARKER not in value
        # the stored check message again (the check ran with the server answering per `mode`)
        checks.check_kubeconfig(user.pk)
        pages = _user_visible(user, str(project.pk), sandbox)
    for name, html in pages.items():
        assert MARKER not in html, name
    if mode in ("401", "403", "403sentence", "500", "text200", "redirect"):
        assert sandbox.status_reason  # something generic was said


def test_generic_messages_per_class() -> None:
    """What each kind of answer becomes (messages only the gateway writes)."""
    expected = {
        "text200": "not a Kubernetes API server",
        "401": "unauthorized",
        "403": "forbidden",
        "403sentence": "forbidden: cannot create statefulsets",  # the namespace was not a name
        "422": "the API server rejected the request (422)",
        "500": "API server error 500",
        "redirect": "not a Kubernetes API server",
    }
    for mode, message in expected.items():
        with fake_apiserver(mode) as server:
            client = Kube(kubeconfig_for(server.url, ca_pem=server.ca_pem), egress=LOOPBACK)
            with pytest.raises(KubeError) as caught:
                client.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
            client.close()
        assert getattr(caught.value, "message", None) == message, mode


# --- TLS failures: translated, no traceback, the check finishes ---------------------------------


def _without_ca(kubesim, namespace: str) -> str:
    data = yaml.safe_load(kubesim.kubeconfig(namespace))
    del data["clusters"][0]["cluster"]["certificate-authority-data"]
    return yaml.safe_dump(data)


@pytest.mark.django_db
def test_a_kubeconfig_without_ca_fails_the_check_with_tls(kubesim, kube_namespace, settings, caplog) -> None:
    settings.RECONCILE_KICK_ON_COMMIT = False
    user = UserFactory()
    services.kubeconfig_save(user=user, text=_without_ca(kubesim, kube_namespace), actor=SYSTEM)
    with caplog.at_level(logging.INFO):
        status, message = checks.check_kubeconfig(user.pk)
    assert status == CheckStatus.FAILED
    assert "TLS verification failed" in message
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    config = UserConfig.objects.get(user=user)
    assert (config.check_status, config.check_message) == (status, message)

    # and a sandbox of that user fails with the same class of message, not an internal error
    UserConfig.objects.filter(user=user).update(check_status=CheckStatus.OK)
    project = project_create(owner=user, name="No CA", actor=Actor(user=user))
    runner.reconcile(Sandbox, ids=[Sandbox.objects.get(project=project).pk])
    sandbox = Sandbox.objects.get(project=project)
    assert sandbox.status == "ERROR"
    assert sandbox.status_reason == "TLS verification failed"


def test_https_to_a_plain_http_port_is_a_tls_failure() -> None:
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    http_server.mode, http_server.location, http_server.requests = "json200", "", []  # type: ignore[attr-defined]
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        port = http_server.server_address[1]
        client = Kube(kubeconfig_for(f"https://127.0.0.1:{port}"), egress=LOOPBACK)
        with pytest.raises(KubeCredentials) as caught:
            client.version()
        client.close()
    finally:
        http_server.shutdown()
        http_server.server_close()
    assert caught.value.message == "TLS verification failed"


def test_the_check_of_a_kubeconfig_without_ca_finishes_in_the_worker(
    transactional_db, kubesim, kube_namespace, celery_worker
) -> None:
    from tests.conftest import wait_for

    user = UserFactory()
    services.kubeconfig_save(user=user, text=_without_ca(kubesim, kube_namespace), actor=SYSTEM)
    config = wait_for(
        lambda: UserConfig.objects.filter(user=user).exclude(check_status=CheckStatus.PENDING).first(),
        what="the check to finish",
    )
    assert config.check_status == CheckStatus.FAILED
    assert "TLS verification failed" in config.check_message


# --- the check's budget and rate limit -----------------------------------------------------------


@pytest.mark.django_db
def test_the_check_keeps_to_its_budget(kubesim, kube_namespace, settings) -> None:
    settings.RECONCILE_KICK_ON_COMMIT = False
    settings.KUBECONFIG_CHECK_BUDGET_SECONDS = 1.0
    user = UserFactory()
    services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace), actor=SYSTEM)
    kubesim.faults(latency_ms=3000, resources=["selfsubjectaccessreviews"])
    try:
        started = time.monotonic()
        status, message = checks.check_kubeconfig(user.pk)
        elapsed = time.monotonic() - started
    finally:
        kubesim.clear_faults()
    assert status == CheckStatus.UNREACHABLE
    assert message.endswith("connection timed out.")
    assert elapsed < 2.0


@pytest.mark.django_db
def test_the_access_reviews_run_in_parallel(kubesim, kube_namespace, settings) -> None:
    settings.RECONCILE_KICK_ON_COMMIT = False
    user = UserFactory()
    services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace), actor=SYSTEM)
    kubesim.faults(latency_ms=300, resources=["selfsubjectaccessreviews"])
    try:
        started = time.monotonic()
        status, _ = checks.check_kubeconfig(user.pk)
        elapsed = time.monotonic() - started
    finally:
        kubesim.clear_faults()
    assert status == CheckStatus.OK
    assert elapsed < 24 * 0.3 / 2  # 24 reviews of 300 ms each, sequential would take 7.2 s


@pytest.mark.django_db
def test_one_check_per_user_per_interval(settings) -> None:
    from reconcile.tasks import check_kubeconfig_task

    settings.KUBECONFIG_CHECK_INTERVAL_SECONDS = 30
    user = UserFactory()
    UserConfig.objects.create(
        user=user,
        key=ConfigKey.KUBECONFIG,
        value=kubeconfig_for("https://127.0.0.1:1"),  # nothing listens on port 1: refused at once
        namespace="ns-egress",
        server_host="127.0.0.1",
        check_status=CheckStatus.PENDING,
    )
    check_kubeconfig_task.apply(args=[str(user.pk)])
    first = UserConfig.objects.get(user=user)
    assert first.check_status == CheckStatus.UNREACHABLE and first.checked_at is not None
    UserConfig.objects.filter(user=user).update(check_status=CheckStatus.PENDING)
    # within the window: no check now, one later check claimed (and only one)
    assert checks.take_check_slot(user.pk) > 25
    check_kubeconfig_task.apply(args=[str(user.pk)])
    assert UserConfig.objects.get(user=user).check_status == CheckStatus.PENDING
    assert checks.schedule_later_check(user.pk, 1) is False  # already scheduled by the task above
    checks.release_later_check(user.pk)
    assert checks.schedule_later_check(user.pk, 1) is True


@pytest.mark.django_db
def test_a_new_egress_setting_gives_a_new_client(settings) -> None:
    config = UserConfig(
        user_id=987654, key=ConfigKey.KUBECONFIG, value=kubeconfig_for("https://k8s.example.test")
    )
    settings.KUBE_EGRESS_ALLOW_CIDRS = []
    first = runner.client_for(config)
    assert runner.client_for(config) is first and first.egress == NOTHING
    settings.KUBE_EGRESS_ALLOW_CIDRS = ["127.0.0.0/8"]
    second = runner.client_for(config)
    assert second is not first and first.closed and second.egress == LOOPBACK
    second.close()
