"""The gateway's `Kube.exec` and `Kube.logs` against kubesim, in a sandbox built from Tenter's own
manifests: exit codes, bounded output, time limits, errors without remote text, egress checked
before any connection, and `sh()` passing values without interpolating them."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.text import redact
from reconcile import manifests
from reconcile.kube.client import Kube, sh
from reconcile.kube.egress import EgressPolicy
from reconcile.kube.errors import (
    KubeCredentials,
    KubeEgressRefused,
    KubeError,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
)
from reconcile.kube.execstream import MAX_STREAM, ExecResult
from reconcile.specs import SandboxSpec
from tests.reconcile.test_egress import (
    LOOPBACK,
    MARKER,
    MODES,
    NOTHING,
    accepted,
    fake_apiserver,
    kubeconfig_for,
    mapped,
)

SECRET = "s3cret-" + secrets.token_hex(6)


def sandbox_spec(namespace: str) -> SandboxSpec:
    return SandboxSpec(
        namespace=namespace,
        name="web-abcdefgh",
        project_id="7f0c2a51-1d7b-4c55-9a43-b2b0d3c0e9f0",
        project_slug="web",
        project_name="Web",
        resource_id="7f0c2a51-1d7b-4c55-9a43-b2b0d3c0e9f1",
        owner_id="42",
        image="example/runtime:1",
        filebrowser_image="example/filebrowser:1",
        cpu_request="20m",
        cpu_limit="1",
        memory_request="25Mi",
        memory_limit="1Gi",
        storage_size="1Gi",
        domain="example.test",
        replicas=1,
        env={"ANTHROPIC_API_KEY": SECRET, "FILE_BROWSER_USERNAME": "fb", "FILE_BROWSER_PASSWORD": "fbpass"},
    )


@pytest.fixture
def kube(kubesim, kube_namespace) -> Iterator[Kube]:
    client = Kube(kubesim.kubeconfig(kube_namespace), egress=LOOPBACK)
    yield client
    client.close()


def wait_running(kube: Kube, pod: str, not_uid: str = "") -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            obj = kube.get("Pod", pod)
        except KubeNotFound:
            obj = {}
        status = obj.get("status") or {}
        uid = (obj.get("metadata") or {}).get("uid", "")
        if status.get("phase") == "Running" and uid != not_uid:
            ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
            if ready and ready[0].get("status") == "True":
                return str(uid)
        time.sleep(0.1)
    raise AssertionError(f"pod {pod} did not become Running")


@pytest.fixture
def sandbox(kube: Kube, kube_namespace: str) -> tuple[str, str]:
    """A sandbox as the reconciler creates it; (pod name, main container name)."""
    spec = sandbox_spec(kube_namespace)
    for manifest in manifests.sandbox_objects(spec):
        kube.apply(manifest)
    pod = f"{spec.name}-0"
    wait_running(kube, pod)
    return pod, spec.name


def test_a_non_zero_exit_is_a_result_with_the_stderr_tail(kube, sandbox):
    pod, main = sandbox
    result = kube.exec(pod, sh("echo out; echo first >&2; echo 'the real error' >&2; exit 3"), container=main)
    assert (result.exit_code, result.ok) == (3, False)
    assert (result.stdout, result.stderr) == ("out\n", "first\nthe real error\n")
    assert result.failure() == "exit 3: first\nthe real error"
    ok = kube.exec(pod, ["true"], container=main)
    assert ok.ok and ok.failure() == "" and ok.duration > 0


def test_env_secret_home_on_the_claim_and_files_that_last(kube, sandbox):
    pod, main = sandbox
    result = kube.exec(pod, sh('echo "$ANTHROPIC_API_KEY $PROJECT_NAME"; echo "$HOME"'), container=main)
    value, home = result.stdout.splitlines()
    assert value == f"{SECRET} Web" and home.endswith("/home/fulling")
    # the filebrowser container gets its values through secretKeyRef
    fb = kube.exec(pod, sh('echo "$FILE_BROWSER_USERNAME:$FILE_BROWSER_PASSWORD"'), container="filebrowser")
    assert fb.stdout == "fb:fbpass\n"
    kube.exec(pod, sh('mkdir -p "$HOME/.skills" && echo installed > "$HOME/.skills/marker"'), container=main)
    again = kube.exec(pod, sh('cat "$HOME/.skills/marker"'), container=main)
    assert again.stdout == "installed\n"
    # the claim is shared by the pod's containers, as a volume is: filebrowser sees it at /srv
    seen = kube.exec(pod, sh('cat "$KUBESIM_ROOT/srv/.skills/marker"'), container="filebrowser")
    assert seen.stdout == "installed\n"


def test_stdin_round_trips_and_ends(kube, sandbox):
    pod, main = sandbox
    data = "".join(f"line {i} ✓\n" for i in range(3000))
    result = kube.exec(pod, ["cat"], stdin=data, container=main)
    assert result.ok and result.stdout == data  # cat saw the end of stdin (v5 close) and exited


def test_output_is_bounded_to_its_tail(kube, sandbox):
    pod, main = sandbox
    result = kube.exec(pod, sh("head -c 300000 /dev/zero | tr '\\0' a; echo; echo END"), container=main)
    assert result.ok and result.truncated
    assert len(result.stdout.encode()) == MAX_STREAM and result.stdout.endswith("a\nEND\n")
    small = kube.exec(pod, sh("echo small"), container=main)
    assert not small.truncated


def test_sh_passes_hostile_values_without_interpolation(kube, sandbox, tmp_path: Path):
    pod, main = sandbox
    touched = tmp_path / "touched"
    hostile = [
        f"$(touch {touched})",
        f"`touch {touched}`",
        f"'; touch {touched}; echo '",
        f'"; touch {touched}; echo "',
        "two\nlines",
        "--help",
        "*",
        "",
    ]
    result = kube.exec(pod, sh('for a in "$@"; do printf "[%s]\\n" "$a"; done', *hostile), container=main)
    assert result.ok
    assert result.stdout == "".join(f"[{value}]\n" for value in hostile)
    assert not touched.exists()


def test_secrets_are_redacted_from_output_and_log(kube, sandbox, caplog):
    pod, main = sandbox
    with caplog.at_level(logging.INFO, logger="reconcile.kube.execstream"):
        result = kube.exec(
            pod, sh('echo "key=$1 env=$ANTHROPIC_API_KEY"', SECRET), container=main, redact=[SECRET]
        )
    assert result.stdout == "key=•••• env=••••\n"
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)
    assert "••••" in caplog.records[-1].getMessage()


def test_logs_are_the_containers_output(kube, sandbox):
    pod, main = sandbox
    text = kube.logs(pod, container=main, tail=10)
    assert text == f"kubesim: started container {main} (image example/runtime:1)\n"
    assert kube.logs(pod, container=main, tail=0) == ""
    with pytest.raises(KubePermanent):  # two containers: the API server wants a name
        kube.logs(pod)
    with pytest.raises(KubeNotFound):
        kube.logs("nope-0", container=main)


def test_the_time_limit_is_transient(kube, sandbox):
    pod, main = sandbox
    with pytest.raises(KubeTransient) as exc:
        kube.exec(pod, ["sleep", "30"], timeout=1.0, container=main)
    assert exc.value.reason == "ExecTimeout"
    # the step's budget bounds the exec too
    step = kube.for_step(kube.namespace, budget=1.0)
    with pytest.raises(KubeTransient) as exc:
        step.exec(pod, ["sleep", "30"], timeout=60.0, container=main)
    assert exc.value.reason == "ExecTimeout"


def test_api_errors(kube, sandbox, kubesim, kube_namespace):
    pod, main = sandbox
    with pytest.raises(KubeNotFound):
        kube.exec("nope-0", ["true"])
    with pytest.raises(KubePermanent) as exc:
        kube.exec(pod, ["true"])  # two containers, none named
    assert exc.value.status == 400
    with pytest.raises(KubePermanent):
        kube.exec(pod, ["true"], container="ghost")
    with pytest.raises(ValueError):
        kube.exec(pod, [], container=main)


def test_forbidden_exec_is_explained_without_remote_text(kubesim, kube_namespace, sandbox):
    pod, main = sandbox
    token = secrets.token_urlsafe(16)
    marker = "REMOTE7c1e"
    kubesim.add_token(token, deny=[{"verb": "create", "resource": "pods/exec"}], user=marker)
    denied = Kube(kubesim.kubeconfig(kube_namespace, token=token), egress=LOOPBACK)
    try:
        assert denied.get("Pod", pod)["metadata"]["name"] == pod  # only exec is denied
        with pytest.raises(KubeCredentials) as exc:
            denied.exec(pod, ["true"], container=main)
    finally:
        denied.close()
    assert exc.value.status == 403
    assert exc.value.message == f"forbidden: cannot exec into pods in namespace {kube_namespace}"
    assert marker not in repr(exc.value) and "User" not in exc.value.message


# --- egress: refused before any connection -------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def test_exec_connects_when_the_policy_allows(listener) -> None:
    port = listener.getsockname()[1]
    client = Kube(kubeconfig_for(f"https://127.0.0.1:{port}"), egress=LOOPBACK)
    try:
        with pytest.raises(KubeTransient):  # the listener never answers
            client.exec("p-0", ["true"], timeout=0.5)
    finally:
        client.close()
    time.sleep(0.05)
    assert accepted(listener) >= 1  # so the refusals below are not a listener that cannot count


@pytest.mark.parametrize(
    ("server", "policy"),
    [
        ("https://127.0.0.1:{port}", NOTHING),
        ("https://[::ffff:127.0.0.1]:{port}", NOTHING),
        ("https://localhost:{port}", NOTHING),
        ("https://rebind.example.test:{port}", mapped("rebind.example.test", "127.0.0.1")),
        ("https://meta.example.test:{port}", mapped("meta.example.test", "169.254.169.254")),
    ],
)
def test_exec_refuses_before_connecting(listener, server: str, policy: Any) -> None:
    port = listener.getsockname()[1]
    client = Kube(kubeconfig_for(server.format(port=port)), egress=policy)
    try:
        with pytest.raises(KubeEgressRefused) as refused:
            client.exec("p-0", ["true"], timeout=2)
    finally:
        client.close()
    assert refused.value.message.startswith("refused by the egress policy")
    time.sleep(0.05)
    assert accepted(listener) == 0


EXPECTED = {  # what a refused upgrade becomes, per answer of a server posing as an API server
    "text200": (KubePermanent, "not a Kubernetes API server"),
    "json200": (KubePermanent, "not a Kubernetes API server"),
    "401": (KubeCredentials, "unauthorized"),
    "403": (KubeCredentials, "forbidden: cannot exec into pods in namespace ns-egress"),
    "403sentence": (KubeCredentials, "forbidden: cannot exec into pods in namespace ns-egress"),
    "404": (KubeNotFound, "not found"),
    "422": (KubePermanent, "the API server rejected the request (422)"),
    "500": (KubeTransient, "API server error 500"),
    "redirect": (KubePermanent, "not a Kubernetes API server"),
}


def test_refused_upgrades_are_classified_without_remote_text(listener) -> None:
    assert set(EXPECTED) == set(MODES)
    target = listener.getsockname()[1]
    for mode, (kind, message) in EXPECTED.items():
        with fake_apiserver(mode, location=f"https://127.0.0.1:{target}/exec") as server:
            client = Kube(kubeconfig_for(server.url, ca_pem=server.ca_pem), egress=LOOPBACK)
            with pytest.raises(KubeError) as caught:
                client.exec("p-0", ["true"], timeout=5)
            client.close()
            assert server.requests[0].startswith(
                "GET /api/v1/namespaces/ns-egress/pods/p-0/exec?command=true&"
            )
        assert type(caught.value) is kind and caught.value.message == message, mode
        assert MARKER not in repr(caught.value), mode
    time.sleep(0.05)
    assert accepted(listener) == 0  # the redirect's target was never contacted


def test_tls_checks_the_kubeconfigs_name(kubesim, kube_namespace, sandbox) -> None:
    import yaml

    pod, main = sandbox
    data = yaml.safe_load(kubesim.kubeconfig(kube_namespace))
    port = data["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    pinned = EgressPolicy(allow=LOOPBACK.allow, resolver=lambda host, _port: ["127.0.0.1"])

    def via(name: str) -> Kube:
        data["clusters"][0]["cluster"]["server"] = f"https://{name}:{port}"
        return Kube(yaml.safe_dump(data), egress=pinned)

    good = via("kubernetes")  # in kubesim's certificate; resolved by the policy's resolver only
    assert good.exec(pod, ["true"], container=main).ok
    good.close()
    bad = via("not-in-the-certificate.example.test")
    with pytest.raises(KubeCredentials) as caught:
        bad.exec(pod, ["true"], container=main)
    bad.close()
    assert caught.value.message == "TLS verification failed"


def test_failure_is_bounded_and_redact_hides_values() -> None:
    noisy = ExecResult(
        exit_code=1, stdout="", stderr="x" * 5000 + "\nlast line\n", duration=0.1, truncated=False
    )
    message = noisy.failure()
    assert message.startswith("exit 1: ") and message.endswith("last line") and len(message) <= 1024
    quiet = ExecResult(exit_code=2, stdout="only stdout\n", stderr="", duration=0.1, truncated=False)
    assert quiet.failure() == "exit 2: only stdout"
    assert ExecResult(exit_code=5, stdout="", stderr="", duration=0, truncated=False).failure() == "exit 5"
    assert redact("token abcd-efgh and abcd, abc", ["abcd", "abcd-efgh", "abc", "", None]) == (
        "token •••• and ••••, abc"
    )
