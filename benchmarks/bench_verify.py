"""Continuous verification (issue 15): the cost of one round over N healthy RUNNING sandboxes.

Run: python benchmarks/bench_verify.py [--quick] [--n 10,100]
For each N: one user, N sandboxes whose objects are applied on kubesim --simulate and ready; one round
takes the baselines, then each measured round (`reconcile.verify.verify_round`) is timed and counted:
SQL queries (CaptureQueriesContext) and Kubernetes requests (kubesim's /_kubesim/stats). The point:
queries and requests per round stay the same whatever N (one LIST per kind per owner and namespace,
a constant number of queries per batch). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, checked_kubeconfig, machine, percentile, setup_django, table, write_result


def one(n: int, rounds: int, kubesim) -> dict[str, float | int | None]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from projects.models import Project
    from reconcile import sandbox as sandbox_steps
    from reconcile import verify
    from reconcile.runner import client_for
    from sandboxes.models import Sandbox
    from userconfig.models import User

    tag = uuid.uuid4().hex[:8]
    ns = kubesim.create_namespace(f"verify-{tag}")
    user = User.objects.create(username=f"bench-verify-{tag}")
    config = checked_kubeconfig(user, kubesim.kubeconfig(ns))
    k = client_for(config).for_step(ns)
    for i in range(n):
        project = Project.objects.create(owner=user, name=f"verify {tag} {i}", status="RUNNING")
        sandbox = Sandbox.objects.create(
            project=project,
            name=f"v{tag}{i}",
            k8s_name=f"v{tag}{i}",
            k8s_namespace=ns,
            k8s_server=config.server_host,
            status="RUNNING",
            image="example/runtime:1",
            cpu_request="20m",
            cpu_limit="1",
            memory_request="25Mi",
            memory_limit="1Gi",
            storage_size="1Gi",
        )
        sandbox_steps.apply_all(k, sandbox, replicas=1, converge=True)
    time.sleep(1.0)  # the pods become ready (ready_after is short)
    verify.verify_round(batch=max(n, 1))  # the baselines
    samples, queries, requests = [], [], []
    for _ in range(rounds):
        kubesim.reset_stats()
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            result = verify.verify_round(batch=max(n, 1))
            samples.append((time.perf_counter() - t0) * 1000)
        queries.append(len(captured))
        requests.append(kubesim.stats()["total"])
    Project.objects.filter(owner=user).delete()
    kubesim.delete_namespace(ns)
    return {
        "sandboxes": n,
        "checked": result.checked,
        "round_median_ms": percentile(samples, 50),
        "round_p95_ms": percentile(samples, 95),
        "sql_per_round": max(queries),
        "k8s_requests_per_round": max(requests),
        "drifted": len(result.drifted),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", default=None, help="comma-separated sandbox counts")
    args = ap.parse_args()
    counts = [int(x) for x in (args.n or ("5,20" if args.quick else "10,100")).split(",")]
    rounds = 3 if args.quick else 10
    setup_django()
    from kubesim.testing import start_kubesim

    kubesim, proc, _ = start_kubesim(ready_after=0.1, simulate=True)
    try:
        rows = [one(n, rounds, kubesim) for n in counts]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        table(
            "verification sweep: one round over N healthy sandboxes (one owner, one namespace)",
            rows,
            [
                "sandboxes",
                "checked",
                "round_median_ms",
                "round_p95_ms",
                "sql_per_round",
                "k8s_requests_per_round",
            ],
        )
    )
    path = write_result(
        "verify",
        {
            "machine": machine(),
            "quick": args.quick,
            "rounds": rounds,
            "results": rows,
            "notes": "SQL and Kubernetes requests per round are constant in the number of healthy sandboxes",
        },
    )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
