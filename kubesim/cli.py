"""Command line entry point and the KubeSim facade (usable in-process)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubesim import tls
from kubesim.api import NS_KEY, Api
from kubesim.crd import load_crd_files
from kubesim.runtime import DEFAULT_EXEC_TIMEOUT, Runtime
from kubesim.server import KubeSimHTTPServer, kubeconfig_text, serve_in_thread

log = logging.getLogger("kubesim")


class KubeSim:
    """A running simulator: API state, HTTPS server and (optionally) simulated controllers."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        namespace: str = "tenter-dev",
        simulate: bool = False,
        ready_after: float = 2.0,
        crd_dir: Path | None = None,
        load_crds: bool = True,
        k8s_version: str = "1.33",
        watch_window: int = 10000,
        tick: float = 0.05,
        verbose: bool = False,
        state_dir: Path | None = None,
        exec_timeout: float = DEFAULT_EXEC_TIMEOUT,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.namespace = namespace
        crds = load_crd_files(crd_dir) if load_crds else []
        self.api = Api(self.token, k8s_version=k8s_version, watch_window=watch_window, crd_docs=crds)
        self.tls = tls.generate([host] if host not in ("127.0.0.1", "localhost", "0.0.0.0") else None)
        self.httpd = KubeSimHTTPServer((host, port), self.api, self.tls, verbose=verbose)
        self.host = host
        self.port = self.httpd.server_address[1]
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.url = f"https://{url_host}:{self.port}"
        self.api.server_address = f"{url_host}:{self.port}"
        self.simulator = None
        self.runtime: Runtime | None = None
        if simulate:
            from kubesim.simulate import Simulator

            self.runtime = Runtime(state_dir, exec_timeout=exec_timeout)
            self.simulator = Simulator(self.api, ready_after=ready_after, tick=tick, runtime=self.runtime)
        if namespace:
            self.ensure_namespace(namespace)
        self._thread: threading.Thread | None = None

    def ensure_namespace(self, name: str) -> None:
        if self.api.store.get(NS_KEY, "", name) is None:
            rt = self.api.registry.get("", "v1", "namespaces")
            assert rt is not None
            self.api.create(rt, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def kubeconfig(self, namespace: str | None = None, token: str | None = None) -> str:
        return kubeconfig_text(self.url, self.tls.ca_pem, token or self.token, namespace or self.namespace)

    def start(self) -> KubeSim:
        self._thread = serve_in_thread(self.httpd)
        if self.simulator is not None:
            self.simulator.start()
        return self

    def stop(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()
        if self.runtime is not None:
            self.runtime.close()
        self.api.store.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> KubeSim:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubesim", description="Local Kubernetes API server simulator")
    add_arguments(p)
    return p


def add_arguments(p: Any) -> None:
    p.add_argument("--port", type=int, default=6443, help="port to listen on (0 picks a free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--simulate", action="store_true", help="play the controllers (StatefulSets, KubeBlocks)")
    p.add_argument("--ready-after", type=float, default=2.0, help="seconds until simulated pods are ready")
    p.add_argument("--kubeconfig-out", default=None, help="write a kubeconfig to this file")
    p.add_argument("--namespace", default="tenter-dev", help="namespace to create and put in the kubeconfig")
    p.add_argument("--token", default=None, help="admin bearer token (random by default)")
    p.add_argument("--crd-dir", default=None, help="directory with the KubeBlocks CRD YAML files")
    p.add_argument("--no-crds", action="store_true", help="do not load CRDs at startup")
    p.add_argument("--k8s-version", default="1.33", help="Kubernetes version for schema validation")
    p.add_argument("--watch-window", type=int, default=10000, help="number of watch events retained")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument(
        "--state-dir",
        default=None,
        help="folder for the simulated pods' and volumes' files (default: a temporary one, removed at exit)",
    )
    p.add_argument(
        "--exec-timeout",
        type=float,
        default=DEFAULT_EXEC_TIMEOUT,
        help="seconds a pods/exec command may run before it is killed",
    )


def run(opts: Any) -> int:
    logging.basicConfig(
        level=logging.INFO if opts.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    t0 = time.monotonic()
    sim = KubeSim(
        host=opts.host,
        port=opts.port,
        token=opts.token,
        namespace=opts.namespace,
        simulate=opts.simulate,
        ready_after=opts.ready_after,
        crd_dir=Path(opts.crd_dir) if opts.crd_dir else None,
        load_crds=not opts.no_crds,
        k8s_version=opts.k8s_version,
        watch_window=opts.watch_window,
        verbose=opts.verbose,
        state_dir=Path(opts.state_dir) if opts.state_dir else None,
        exec_timeout=opts.exec_timeout,
    )
    if opts.kubeconfig_out:
        out = Path(opts.kubeconfig_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(sim.kubeconfig())
        os.replace(tmp, out)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    sim.start()
    print(f"kubesim ready on {sim.url} (startup {time.monotonic() - t0:.2f}s)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv if argv is not None else sys.argv[1:]))
