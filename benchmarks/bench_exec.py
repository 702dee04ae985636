"""Exec round trip: `Kube.exec` (the gateway's own egress-vetted WebSocket) against kubesim --simulate.

Run: python benchmarks/bench_exec.py [--quick] [--n 200]
Each sample is one whole exec: a vetted TCP connection, TLS, the WebSocket upgrade, a host process
started by kubesim, its exit status on channel 3. Prints a table and writes benchmarks/results/exec.json.
Figures only; nothing is asserted. Runs of 3 (1 with --quick); the figures are medians of the runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, median_runs, percentile, table, write_result  # noqa: E402

from kubesim.testing import start_kubesim  # noqa: E402
from reconcile.kube.client import Kube, sh  # noqa: E402
from reconcile.kube.egress import EgressPolicy  # noqa: E402

STS = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "bench"},
    "spec": {
        "serviceName": "bench",
        "selector": {"matchLabels": {"app": "bench"}},
        "template": {
            "metadata": {"labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "main", "image": "example/bench:1"}]},
        },
    },
}


def measure(fn, n: int) -> dict[str, float | None]:
    for _ in range(min(10, n)):  # warm-up
        fn()
    samples = []
    t_all = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    total = time.perf_counter() - t_all
    return {
        "n": n,
        "per_s": n / total,
        "median_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
    }


def one_run(n: int) -> dict[str, dict[str, float | None]]:
    handle, proc, _ = start_kubesim(ready_after=0.1)
    try:
        handle.create_namespace("bench")
        kube = Kube(handle.kubeconfig("bench"), egress=EgressPolicy.from_cidrs("127.0.0.0/8"))
        kube.apply(STS)
        deadline = time.monotonic() + 30
        while True:
            try:
                if kube.exec("bench-0", ["true"]).ok:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        payload = "x" * (256 * 1024)
        results = {
            "exec `true`": measure(lambda: kube.exec("bench-0", ["true"]), n),
            "exec sh -c 'echo …' (sh(), 1 arg)": measure(
                lambda: kube.exec("bench-0", sh('echo "$1"', "value")), n
            ),
            "exec `cat` 256 KiB stdin -> stdout": measure(
                lambda: kube.exec("bench-0", ["cat"], stdin=payload), max(10, n // 4)
            ),
        }
        kube.close()
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="execs per measured operation")
    args = ap.parse_args()
    n = args.n or (30 if args.quick else 200)
    repeats = 1 if args.quick else 3
    runs = [one_run(n) for _ in range(repeats)]
    merged = {op: median_runs([r[op] for r in runs]) for op in runs[0]}
    rows = [{"operation": op, **r} for op, r in merged.items()]
    print(
        table(
            "exec round trip through the gateway against kubesim",
            rows,
            ["operation", "n", "per_s", "median_ms", "p95_ms"],
        )
    )
    path = write_result(
        "exec",
        {
            "machine": machine(),
            "quick": args.quick,
            "repeats": repeats,
            "results": merged,
            "notes": "one sample = one whole Kube.exec (vetted connect, TLS, WebSocket upgrade, host "
            "process in kubesim, status channel); kubesim runs on the same machine",
        },
    )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
