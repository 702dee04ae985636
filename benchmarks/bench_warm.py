"""Time to ready with and without a warm pool (issue 19): kubesim --simulate --ready-after 20 (a pod takes
20 s to start, as on a real cluster), real Celery workers and beat, one user.

Run: python benchmarks/bench_warm.py [--quick] [--pool 5] [--warm 10] [--cold 3] [--workers 2]

For each create the clock starts when `POST /api/v1/projects` is sent (through the whole API stack in this
process, DRF's test client: authentication, throttles, the serializer, the view and `project_create`'s
one transaction, the claim of a warm sandbox included; no network hop) and stops
- at `running`: the project's status is RUNNING in the database (polled every 5 ms), and
- at `env`: a command run in the sandbox through the gateway's exec sees the project's env (for a warm
  sandbox: `. $HOME/.tenter/env` prints the project's name; for a cold one the pod's own env does).

Scenarios:
- warm, one at a time: the pool is filled to `--pool` first (not measured), then `--warm` creates in a
  row (the pool is refilled to full whenever it is empty, not measured);
- cold, one at a time: the same user with warm pools off, `--cold` creates in a row;
- burst: the pool full, 2 x `--pool` creates at once (threads): the pool's share is warm, the rest cold.

Figures: p50/p95 of each (and of the create call itself, `create`), and how many of a burst were
warm. The target of issue 19: warm p95 < 1 s.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_reconcile as br
from common import percentile, table, write_result
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from core.audit import SYSTEM
from projects import pools
from projects.models import PoolPolicy, Project
from reconcile import runner
from reconcile.kube.client import sh
from sandboxes.models import ResourceEvent, Sandbox
from userconfig.models import ConfigKey, User, UserConfig

READY_AFTER = 20.0


def idle(user: User, policy: PoolPolicy) -> int:
    return Sandbox.objects.filter(
        project__owner=user, project__pool=policy, status="RUNNING", binding=False
    ).count()


def fill(user: User, policy: PoolPolicy, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while idle(user, policy) < policy.target:
        if time.monotonic() > deadline:
            raise RuntimeError("the pool did not fill")
        pools.refill_user(user=user, policy=policy, actor=SYSTEM, batch=policy.target)
        time.sleep(0.5)


def env_visible(user: User, project: Project, timeout: float = 120.0) -> bool:
    """Run a command in the sandbox until it prints the project's name from its env."""
    sandbox = Sandbox.objects.get(project=project)
    config = UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG)
    kube = runner.client_for(config).for_step(sandbox.k8s_namespace)
    script = '[ -f "$HOME/.tenter/env" ] && . "$HOME/.tenter/env"; printf %s "$PROJECT_NAME"'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = kube.exec(f"{sandbox.k8s_name}-0", sh(script), container=sandbox.k8s_name, timeout=10)
            if result.ok and result.stdout == project.name:
                return True
        except Exception:  # the pod is not there yet
            pass
        time.sleep(0.05)
    return False


def one(user: User, name: str, timeout: float = 120.0) -> dict[str, Any]:
    api = APIClient()
    api.force_authenticate(user)
    t0 = time.perf_counter()
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    created = time.perf_counter() - t0
    if response.status_code != 202:
        raise RuntimeError(f"{name}: the create answered {response.status_code}")
    body = response.json()
    project = Project.objects.get(pk=body["id"])
    warm = body["status"] == "UPDATING"  # a claimed warm sandbox binds; a cold one is CREATING
    deadline = time.monotonic() + timeout
    while Project.objects.filter(pk=project.pk).values_list("status", flat=True).first() != "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not reach RUNNING")
        time.sleep(0.005)
    running = time.perf_counter() - t0
    if not env_visible(user, project):
        raise RuntimeError(f"{name}: the env never showed in the sandbox")
    return {"warm": warm, "create_s": created, "running_s": running, "env_s": time.perf_counter() - t0}


def summary(scenario: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    running = [r["running_s"] for r in rows]
    env = [r["env_s"] for r in rows]
    return {
        "scenario": scenario,
        "n": len(rows),
        "warm": sum(1 for r in rows if r["warm"]),
        "create_p50_s": percentile([r["create_s"] for r in rows], 50),
        "create_p95_s": percentile([r["create_s"] for r in rows], 95),
        "running_p50_s": percentile(running, 50),
        "running_p95_s": percentile(running, 95),
        "env_p50_s": percentile(env, 50),
        "env_p95_s": percentile(env, 95),
    }


def burst(user: User, n: int, tag: str) -> list[dict[str, Any]]:
    results: list[Any] = [None] * n
    gate = threading.Barrier(n)

    def go(i: int) -> None:
        try:
            gate.wait()
            results[i] = one(user, f"Burst {tag} {i}")
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"burst: {errors[0]}")
    return results


def cleanup(user: User, ns: str, kubesim: Any) -> None:
    ids = list(Sandbox.objects.filter(project__owner=user).values_list("pk", flat=True))
    Project.all_objects.filter(owner=user).delete()
    ResourceEvent.objects.filter(resource_id__in=ids).delete()
    User.objects.filter(pk=user.pk).delete()
    kubesim.delete_namespace(ns)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pool", type=int, default=None, help="pool target (default 5; quick 3)")
    ap.add_argument("--warm", type=int, default=None, help="warm creates one at a time (default 10; quick 3)")
    ap.add_argument("--cold", type=int, default=None, help="cold creates one at a time (default 3; quick 1)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    pool = args.pool or (3 if args.quick else 5)
    n_warm = args.warm or (3 if args.quick else 10)
    n_cold = args.cold or (1 if args.quick else 3)
    from kubesim.testing import start_kubesim

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the test client's host
    kubesim, kproc, ktmp = start_kubesim(ready_after=READY_AFTER, simulate=True)
    br.flush_broker()
    workers = br.Workers(args.workers, {})
    rows: list[dict[str, Any]] = []
    user, ns = br.fresh_user(kubesim)
    PoolPolicy.objects.filter(image=settings.RUNTIME_IMAGE, size="small").delete()
    policy = PoolPolicy.objects.create(image=settings.RUNTIME_IMAGE, size="small", target=pool)
    try:
        time.sleep(1.0)
        warm_rows = []
        for i in range(n_warm):
            if idle(user, policy) == 0:
                fill(user, policy)
            warm_rows.append(one(user, f"Warm {i}"))
            print(f"  [warm {i + 1}/{n_warm}] {warm_rows[-1]}", file=sys.stderr, flush=True)
        rows.append(summary("warm, one at a time", warm_rows))
        fill(user, policy)
        results = burst(user, 2 * pool, "a")
        print(f"  [burst of {2 * pool}] {sum(r['warm'] for r in results)} warm", file=sys.stderr, flush=True)
        rows.append(summary(f"burst of {2 * pool}: warm share", [r for r in results if r["warm"]]))
        rows.append(summary(f"burst of {2 * pool}: cold share", [r for r in results if not r["warm"]]))
        pools.set_warm_pool(user=user, enabled=False, actor=SYSTEM)
        cold_rows = []
        for i in range(n_cold):
            cold_rows.append(one(user, f"Cold {i}"))
            print(f"  [cold {i + 1}/{n_cold}] {cold_rows[-1]}", file=sys.stderr, flush=True)
        rows.append(summary("cold (no pool), one at a time", cold_rows))
    finally:
        workers.close()
        cleanup(user, ns, kubesim)
        policy.delete()
        br.stop(kproc)
        br.shutil.rmtree(ktmp, ignore_errors=True)
    cols = [
        "scenario",
        "n",
        "warm",
        "create_p50_s",
        "create_p95_s",
        "running_p50_s",
        "running_p95_s",
        "env_p50_s",
        "env_p95_s",
    ]
    print(table(f"Time to ready, pods starting in {READY_AFTER:.0f} s (kubesim)", rows, cols))
    result = {"rows": rows, "pool": pool, "ready_after_s": READY_AFTER, "workers": args.workers}
    write_result("bench_warm", result)
    return result


if __name__ == "__main__":
    main()
