"""pytest plugin: a session-wide kubesim server in a subprocess.

Add ``"kubesim.testing"`` to ``pytest_plugins``; then use the ``kubesim`` (session) and
``kube_namespace`` (function) fixtures. See kubesim/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


class KubeSimHandle:
    """Handle on a running kubesim server (see the `kubesim` fixture)."""

    def __init__(
        self, url: str, token: str, kubeconfig_text: str, process: subprocess.Popen[str] | None = None
    ):
        self.url = url
        self.token = token
        self._kubeconfig = yaml.safe_load(kubeconfig_text)
        self.ca_pem = _b64decode(self._kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        self.process = process
        self._ctx = ssl.create_default_context(cadata=self.ca_pem.decode())

    # -- kubeconfig / clients -------------------------------------------------
    def kubeconfig(self, namespace: str, token: str | None = None) -> str:
        """Kubeconfig YAML text whose current context points at `namespace` (and `token` if given)."""
        cfg = json.loads(json.dumps(self._kubeconfig))
        cfg["contexts"][0]["context"]["namespace"] = namespace
        if token is not None:
            cfg["users"][0]["user"]["token"] = token
        return yaml.safe_dump(cfg, sort_keys=False)

    def api_client(self, namespace: str = "default", token: str | None = None) -> Any:
        """An official kubernetes.client.ApiClient built from kubeconfig(namespace, token)."""
        from kubernetes import config

        return config.new_client_from_config_dict(yaml.safe_load(self.kubeconfig(namespace, token)))

    # -- admin endpoints ------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        code, out = self.request(method, path, body)
        if code >= 400:
            raise RuntimeError(f"kubesim {method} {path} failed: {code} {out}")
        return out

    def create_namespace(self, name: str) -> str:
        code, out = self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {name}: {code} {out}")
        return name

    def delete_namespace(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{name}")

    def faults(self, **kw: Any) -> dict[str, Any]:
        """Inject faults: rate, status, latency_ms, drop, verbs, resources, retry_after, count."""
        return self._admin("POST", "/_kubesim/faults", kw)

    def clear_faults(self) -> None:
        self._admin("DELETE", "/_kubesim/faults")

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/_kubesim/stats")

    def reset_stats(self) -> None:
        self._admin("DELETE", "/_kubesim/stats")

    def add_token(
        self,
        token: str,
        deny: list[dict[str, str]] | None = None,
        user: str | None = None,
        allow_all: bool = True,
    ) -> None:
        """Register a bearer token; `deny` rules look like {"verb": "create", "resource": "statefulsets"}."""
        body: dict[str, Any] = {"token": token, "deny": deny or [], "allow_all": allow_all}
        if user:
            body["user"] = user
        self._admin("POST", "/_kubesim/tokens", body)


def _b64decode(s: str) -> bytes:
    import base64

    return base64.b64decode(s)


def start_kubesim(
    ready_after: float = 0.3,
    simulate: bool = True,
    extra_args: list[str] | None = None,
    timeout: float = 30.0,
) -> tuple[KubeSimHandle, subprocess.Popen[str], str]:
    """Start `python -m kubesim` in a subprocess; returns (handle, process, tmpdir)."""
    tmpdir = tempfile.mkdtemp(prefix="kubesim-")
    kc_path = os.path.join(tmpdir, "kubeconfig.yaml")
    token = secrets.token_urlsafe(24)
    cmd = [
        sys.executable,
        "-m",
        "kubesim",
        "--port",
        "0",
        "--ready-after",
        str(ready_after),
        "--kubeconfig-out",
        kc_path,
        f"--token={token}",  # a token may start with "-": not a separate argument
        "--namespace",
        "default",
    ]
    if simulate:
        cmd.append("--simulate")
    cmd += extra_args or []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(
        cmd, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    ready = threading.Event()
    url_box: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not ready.is_set():
                lines.append(line)
                if line.startswith("kubesim ready on "):
                    url_box.append(line.split()[3])
                    ready.set()
            elif os.environ.get("KUBESIM_ECHO"):
                sys.stderr.write("[kubesim] " + line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("kubesim did not start:\n" + "".join(lines))
    text = Path(kc_path).read_text()
    return KubeSimHandle(url_box[0], token, text, proc), proc, tmpdir


@pytest.fixture(scope="session")
def kubesim() -> Iterator[KubeSimHandle]:
    """One kubesim server (simulate on, ready-after 0.3 s) for the whole test session."""
    handle, proc, _ = start_kubesim()
    try:
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def kube_namespace(kubesim: KubeSimHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, uniquely named namespace on the session kubesim; deleted after the test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:30].strip("-") or "t"
    name = f"{base}-{secrets.token_hex(3)}"
    kubesim.create_namespace(name)
    yield name
    with contextlib.suppress(Exception):  # best effort
        kubesim.delete_namespace(name)
