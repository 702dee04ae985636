"""pods/exec and pods/log under --simulate, through the official client (kubernetes.stream).

The commands are real host processes (kubesim/runtime.py): the tests check their pids on this machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from typing import Any

import pytest
from kubernetes.client import ApiException
from kubernetes.stream import stream

from kubesim.testing import start_kubesim
from tests.kubesim.helpers import clients_from_kubeconfig, wait_for


@pytest.fixture
def k(kubesim, kube_namespace):
    return clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))


def workload(
    k: Any,
    ns: str,
    name: str = "box",
    *,
    containers: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A StatefulSet with a claim mounted at /home/dev; returns the uid of its Running pod."""
    main = {
        "name": "main",
        "image": "example/dev:1",
        "volumeMounts": [{"name": "home", "mountPath": "/home/dev"}],
    }
    meta: dict[str, Any] = {"labels": {"app": name}}
    if annotations:
        meta["annotations"] = annotations
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": meta, "spec": {"containers": containers or [main]}},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "home"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    k.apps.create_namespaced_stateful_set(ns, body)
    return running(k, ns, f"{name}-0")


def running(k: Any, ns: str, pod: str, not_uid: str = "") -> str:
    def check() -> str | None:
        p = k.core.read_namespaced_pod(pod, ns)
        ok = p.status is not None and p.status.phase == "Running" and p.metadata.uid != not_uid
        return p.metadata.uid if ok else None

    return wait_for(check, timeout=15)


def open_exec(k: Any, ns: str, pod: str, argv: list[str], *, stdin: bool = False, **kw: Any) -> Any:
    return stream(
        k.core.connect_get_namespaced_pod_exec,
        pod,
        ns,
        command=argv,
        stdin=stdin,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
        **kw,
    )


def run(
    k: Any, ns: str, pod: str, argv: list[str], stdin: str | None = None, **kw: Any
) -> tuple[int, str, str]:
    ws = open_exec(k, ns, pod, argv, stdin=stdin is not None, **kw)
    if stdin is not None:
        ws.write_stdin(stdin)
        ws.close_channel(0)  # v5: end of stdin
    ws.run_forever(timeout=30)
    assert not ws.is_open()
    return ws.returncode, ws.read_stdout(), ws.read_stderr()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_exit_code_and_both_streams(k, kube_namespace):
    workload(k, kube_namespace)
    code, out, err = run(k, kube_namespace, "box-0", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, err) == (3, "out\n", "err\n")
    ws = open_exec(k, kube_namespace, "box-0", ["true"])
    ws.run_forever(timeout=30)
    assert ws.subprotocol == "v5.channel.k8s.io"
    assert ws.returncode == 0
    quiet = stream(
        k.core.connect_get_namespaced_pod_exec,
        "box-0",
        kube_namespace,
        command=["sh", "-c", "echo o; echo e >&2"],
        stdin=False,
        stdout=False,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    quiet.run_forever(timeout=30)
    assert (quiet.returncode, quiet.read_stdout(), quiet.read_stderr()) == (0, "", "e\n")


def test_status_channel_is_what_the_api_server_sends(k, kube_namespace):
    workload(k, kube_namespace)
    ws = open_exec(k, kube_namespace, "box-0", ["sh", "-c", "exit 7"])
    ws.run_forever(timeout=30)
    import json

    status = json.loads(ws.read_channel(3))
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]


def test_stdin_round_trips(k, kube_namespace):
    workload(k, kube_namespace)
    text = "line one\nsecond line with ünïcode\n" * 200
    code, out, _ = run(k, kube_namespace, "box-0", ["cat"], stdin=text)
    assert code == 0 and out == text


def test_env_from_the_pods_secret_is_visible(k, kube_namespace):
    k.core.create_namespaced_secret(
        kube_namespace,
        {"metadata": {"name": "env"}, "stringData": {"API_KEY": "s3cret-value", "OTHER": "o"}},
    )
    container = {
        "name": "main",
        "image": "example/dev:1",
        "envFrom": [{"secretRef": {"name": "env"}}],
        "env": [
            {"name": "PLAIN", "value": "p"},
            {"name": "PICKED", "valueFrom": {"secretKeyRef": {"name": "env", "key": "OTHER"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "volumeMounts": [{"name": "home", "mountPath": "/home/dev"}],
    }
    workload(k, kube_namespace, containers=[container])
    code, out, _ = run(k, kube_namespace, "box-0", ["sh", "-c", 'echo "$API_KEY|$PICKED|$PLAIN|$POD"'])
    assert code == 0 and out == "s3cret-value|o|p|box-0\n"
    # kubesim's own environment (its PYTHONPATH, say) does not leak into the container
    code, out, _ = run(k, kube_namespace, "box-0", ["env"])
    assert code == 0 and "API_KEY=s3cret-value" in out and "PYTHONPATH=" not in out


def test_files_persist_between_execs_and_the_claim_survives_the_pod(k, kube_namespace):
    uid = workload(k, kube_namespace)
    script = 'echo kept > "$HOME/kept.txt" && echo lost > scratch.txt && pwd && echo "$HOME"'
    code, out, _ = run(k, kube_namespace, "box-0", ["sh", "-c", script])
    assert code == 0
    cwd, home = out.split()
    assert home.endswith("/home/dev") and home.startswith(cwd)  # HOME inside the container's root
    code, out, _ = run(k, kube_namespace, "box-0", ["sh", "-c", 'cat "$HOME/kept.txt" scratch.txt'])
    assert (code, out) == (0, "kept\nlost\n")

    k.core.delete_namespaced_pod("box-0", kube_namespace)
    running(k, kube_namespace, "box-0", not_uid=uid)  # recreated by the StatefulSet
    code, out, err = run(k, kube_namespace, "box-0", ["sh", "-c", 'cat "$HOME/kept.txt"; cat scratch.txt'])
    assert code == 1 and out == "kept\n" and "scratch.txt" in err
    assert not os.path.exists(cwd)  # the old pod's folder went with it


def test_logs_with_tail_lines_and_since_seconds(k, kube_namespace):
    container = {
        "name": "main",
        "image": "example/dev:1",
        "command": ["sh", "-c"],
        "args": ["echo one; echo two; echo three; sleep 4; echo late; exec sleep 600"],
    }
    workload(k, kube_namespace, containers=[container], annotations={"kubesim.dev/run-command": "true"})

    def log(**kw: Any) -> str:
        resp = k.core.read_namespaced_pod_log("box-0", kube_namespace, _preload_content=False, **kw)
        return resp.data.decode()

    full = wait_for(lambda: "late" in log() and log(), timeout=20)
    assert full.splitlines()[:4] == [
        "kubesim: started container main (image example/dev:1)",
        "one",
        "two",
        "three",
    ]
    assert log(tail_lines=2) == "three\nlate\n"
    assert log(tail_lines=1) == "late\n"
    recent = log(since_seconds=3)
    assert "late" in recent and "one" not in recent
    stamped = log(tail_lines=1, timestamps=True)
    assert stamped.endswith(" late\n") and stamped[:4].isdigit()


def test_logs_of_a_multi_container_pod_need_the_container(k, kube_namespace):
    containers = [{"name": "main", "image": "a"}, {"name": "side", "image": "b"}]
    workload(k, kube_namespace, containers=containers)
    with pytest.raises(ApiException) as exc:
        k.core.read_namespaced_pod_log("box-0", kube_namespace)
    assert exc.value.status == 400 and "a container name must be specified" in exc.value.body
    resp = k.core.read_namespaced_pod_log("box-0", kube_namespace, container="side", _preload_content=False)
    assert resp.data.decode() == "kubesim: started container side (image b)\n"
    code, out, _ = run(k, kube_namespace, "box-0", ["sh", "-c", "echo $HOSTNAME"], container="side")
    assert (code, out) == (0, "box-0\n")


def refusal(k: Any, ns: str, pod: str, argv: list[str], **kw: Any) -> str:
    """The websocket error of an exec the server refused. kubernetes.stream turns a refused upgrade into
    ApiException(status=0, reason=<the error>), then fails on it itself (its body is None)."""
    try:
        run(k, ns, pod, argv, **kw)
    except ApiException as exc:
        return str(exc.reason)
    except AttributeError as exc:
        assert isinstance(exc.__context__, ApiException)
        return str(exc.__context__.reason)
    raise AssertionError("the exec was not refused")


def test_errors_like_the_api_server(k, kubesim, kube_namespace):
    assert "Handshake status 404" in refusal(k, kube_namespace, "nope-0", ["true"])

    containers = [{"name": "main", "image": "a"}, {"name": "side", "image": "b"}]
    workload(k, kube_namespace, containers=containers)
    assert "Handshake status 400" in refusal(
        k, kube_namespace, "box-0", ["true"]
    )  # two containers, none named
    assert "Handshake status 400" in refusal(k, kube_namespace, "box-0", ["true"], container="ghost")

    token = secrets.token_urlsafe(16)
    kubesim.add_token(token, deny=[{"verb": "create", "resource": "pods/exec"}])
    denied = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace, token=token))
    assert "Handshake status 403" in refusal(denied, kube_namespace, "box-0", ["true"], container="main")
    # the same token may still read the pod: only exec is denied
    assert denied.core.read_namespaced_pod("box-0", kube_namespace).metadata.name == "box-0"


def test_a_container_that_is_not_running_refuses_exec(k, kube_namespace):
    containers = [{"name": "main", "image": "example/kubesim-fail-crashloop:1"}]
    workload(k, kube_namespace, containers=containers)  # phase Running, the container crash-looping
    assert "Handshake status 400" in refusal(k, kube_namespace, "box-0", ["true"])


def test_deleting_the_pod_kills_a_running_exec(k, kube_namespace):
    workload(k, kube_namespace)
    ws = open_exec(k, kube_namespace, "box-0", ["sh", "-c", "echo $$; exec sleep 120"])
    pid = int(wait_for(lambda: ws.readline_stdout(timeout=1), timeout=15))
    assert alive(pid)
    k.core.delete_namespaced_pod("box-0", kube_namespace)
    ws.run_forever(timeout=30)
    assert not ws.is_open()
    assert ws.returncode == 137  # killed (128 + SIGKILL), as a container runtime reports it
    wait_for(lambda: not alive(pid), timeout=10)


@pytest.fixture(scope="module")
def short_limit():
    handle, proc, _ = start_kubesim(extra_args=["--exec-timeout", "1.5"])
    try:
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_time_limit_kills_the_process(short_limit):
    ns = f"limit-{secrets.token_hex(3)}"
    short_limit.create_namespace(ns)
    k = clients_from_kubeconfig(short_limit.kubeconfig(ns))
    workload(k, ns)
    started = time.monotonic()
    ws = open_exec(k, ns, "box-0", ["sh", "-c", "echo $$; exec sleep 120"])
    pid = int(wait_for(lambda: ws.readline_stdout(timeout=1), timeout=15))
    ws.run_forever(timeout=60)
    assert not ws.is_open() and time.monotonic() - started < 60
    assert ws.returncode == 137
    assert "time limit of 1.5s exceeded" in ws.read_stderr()
    wait_for(lambda: not alive(pid), timeout=10)
