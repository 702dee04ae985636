"""The command-line contract: kubeconfig written with the real port, namespace created, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.kubesim.helpers import clients_from_kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str], kc: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*args, "--port", "0", "--kubeconfig-out", str(kc), "--namespace", "dev-ns", "--token", "t0ken"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("kubesim ready on "):
            return proc, line.split()[3]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("kubesim did not become ready")


def _check(proc: subprocess.Popen[str], url: str, kc: Path) -> None:
    try:
        text = kc.read_text()
        cfg = yaml.safe_load(text)
        assert cfg["clusters"][0]["cluster"]["server"] == url and not url.endswith(":0")
        assert cfg["contexts"][0]["context"]["namespace"] == "dev-ns"
        assert cfg["users"][0]["user"]["token"] == "t0ken"
        assert cfg["current-context"] == cfg["contexts"][0]["name"]
        k = clients_from_kubeconfig(text)
        assert k.core.read_namespace("dev-ns").status.phase == "Active"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_python_m_kubesim(tmp_path):
    t0 = time.monotonic()
    proc, url = _start([sys.executable, "-m", "kubesim"], tmp_path / "kc.yaml")
    assert time.monotonic() - t0 < 5  # CRDs parsed once at startup
    _check(proc, url, tmp_path / "kc.yaml")


def test_manage_py_kubesim(tmp_path):
    proc, url = _start(
        [sys.executable, "manage.py", "kubesim", "--simulate", "--ready-after", "0.1"], tmp_path / "kc.yaml"
    )
    _check(proc, url, tmp_path / "kc.yaml")


def test_keep_alive_reuses_connections(kubesim, kube_namespace):
    k = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))
    k.core.list_namespaced_config_map(kube_namespace)
    before = kubesim.stats()["connections"]
    for _ in range(20):
        k.core.list_namespaced_config_map(kube_namespace)
    assert kubesim.stats()["connections"] - before <= 2  # the stats call itself opens one


def test_missing_crd_dir_falls_back(tmp_path, caplog):
    from kubesim.cli import KubeSim

    with caplog.at_level("WARNING", logger="kubesim"):
        sim = KubeSim(port=0, crd_dir=tmp_path / "missing", namespace="")
    try:
        assert sim.api.registry.any_version("apps.kubeblocks.io", "clusters") is None
        assert "not found" in caplog.text
    finally:
        sim.httpd.server_close()
