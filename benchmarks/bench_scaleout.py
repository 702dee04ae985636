"""Scale-out (issue 18): Tenter's own processes as a deployment would run them, on one machine.

Run: python benchmarks/bench_scaleout.py [--quick] [--n 1000] [--users 20] [--no-baseline]
     (or: python benchmarks/run.py bench_scaleout [--quick])

The scale-out run: 2 gunicorn processes (one `gunicorn` with WEB_CONCURRENCY=2: two sync workers),
4 `celery worker --pool prefork --concurrency 1` and 2 `celery beat` (the leader lock lets one schedule)
on one PostgreSQL, Redis and kubesim (`--simulate --ready-after 0`). U users (a fresh kubesim namespace,
kubeconfig and API token each) create N projects through `POST /api/v1/projects`, one client thread per
user, all at once. During the run one worker is killed with SIGKILL 2 s in (its whole process group, a
node lost; its leases expire) and restarted, then the workers are restarted one by one with SIGTERM (a
rolling update: each must finish its step, release its leases and exit 0; the next one is stopped once
its replacement logged "ready.").
The process orchestration is tests/scaleout_harness.py, shared with tests/test_scale_out.py (the small
version of this scenario, which asserts).

The one-process run (unless --no-baseline): the same N and users through 1 gunicorn worker, 1 Celery
worker and 1 beat, no restarts: the ratio of the two is the scale-out factor on this machine.

Figures per run:
- sandboxes_per_s: projects RUNNING / (last RUNNING event - first POST).
- running_p50/p95/max_s: the sandbox's first RUNNING event - the start of its POST.
- post_p50/p95_ms: POST /api/v1/projects latency at the clients.
- dup_creates: objects in the run's namespaces that kubesim created more than once (its request log's
  successful creates, `created_by_object`; must be 0).
- creates_resent: objects whose create request was sent more than once (`by_object`): the step of a
  SIGKILLed worker re-run after its lease expired sends its creates again and gets 409 AlreadyExists.
  Not a fault; it shows the kill landed mid-step.
- dup_transitions: (resource, to-status) pairs the ResourceEvent timeline records twice: a step
  recorded twice for one lease (must be 0).
- not_running: projects not RUNNING at the end (must be 0); post_errors: failed POSTs (must be 0).
- load: 1-minute load average before the fleet starts and max during the run, and the machine's CPU
  busy % (all processes, /proc/stat) over the 5 s before and during the run. Another job on the machine
  shows here.
- disruptions: when each SIGTERM/SIGKILL happened (s after the first POST), how many projects were not
  yet RUNNING at that moment, the exit code and how long the worker took to exit.

Settings: the defaults, except RECONCILE_LEASE_SECONDS=15 (a SIGKILLed worker's leases would otherwise
hold its sandboxes 60 s: the figure would measure the lease, not the fleet) and API_THROTTLE_WRITES
raised (60 creates a minute per user is the product's limit, not the fleet's). LOG_LEVEL=INFO, the
deployed default (and the workers' "ready." line is how a restart is known to be done).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Load, bench_env, cpu_busy_pct, percentile, setup_django, table, write_result

for _k in (
    "RECONCILE_BATCH_SIZE",
    "RECONCILE_SWEEP_SECONDS",
    "RECONCILE_KICK_ON_COMMIT",
    "RECONCILE_POLL_SECONDS",
):
    os.environ.pop(_k, None)  # the defaults, not stray overrides
os.environ.update(bench_env())
setup_django()

from django.db import connection, transaction  # noqa: E402

from core.audit import SYSTEM  # noqa: E402
from projects.models import Project, Quota  # noqa: E402
from sandboxes.models import ResourceEvent, Sandbox  # noqa: E402
from tests import scaleout_harness as harness  # noqa: E402
from userconfig import services as userconfig_services  # noqa: E402
from userconfig.models import User  # noqa: E402

PREFIX = "bench-scaleout-"
# bench_reconcile's one-process figure in benchmarks/README.md (1 solo worker, N = 1,000 created in one
# transaction, one namespace), quoted for comparison: a different shape of load than the HTTP clients here.
README_ONE_WORKER_PER_S = 28.7


def tenants(kubesim: Any, count: int, tag: str) -> tuple[list[User], list[str], list[str]]:
    users, namespaces, tokens = [], [], []
    for i in range(count):
        ns = kubesim.create_namespace(f"bso-{tag}-{i}")
        user = User.objects.create(username=f"{PREFIX}{tag}-{i}")
        Quota.objects.create(
            user=user, max_projects=100_000, max_running_sandboxes=100_000, max_cpu="100000", max_memory="1Ei"
        )
        userconfig_services.kubeconfig_save(user=user, text=kubesim.kubeconfig(ns), actor=SYSTEM)
        _, secret = userconfig_services.api_token_create(user=user, name="bench", actor=SYSTEM)
        users.append(user)
        namespaces.append(ns)
        tokens.append(secret)
    return users, namespaces, tokens


def cleanup(users: list[User]) -> None:
    ids = list(Sandbox.objects.filter(project__owner__in=users).values_list("pk", flat=True))
    with transaction.atomic():
        Project.objects.filter(owner__in=users).delete()
        ResourceEvent.objects.filter(resource_id__in=ids).delete()
        User.objects.filter(pk__in=[u.pk for u in users]).delete()


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


def pending(users: list[User], n: int) -> int:
    """Projects of the run not RUNNING yet, counting those not created yet."""
    running = Project.objects.filter(owner__in=users, status="RUNNING").count()
    return n - running


def run(
    kubesim: Any, label: str, n: int, n_users: int, web: int, workers: int, beats: int, disrupt: bool
) -> dict[str, Any]:
    flush_broker()
    tag = uuid.uuid4().hex[:6]
    users, namespaces, tokens = tenants(kubesim, n_users, tag)
    per_user = -(-n // n_users)
    n = per_user * n_users
    logdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    port = harness.free_port()
    env = harness.process_env(
        bench_env(),
        port=port,
        WEB_CONCURRENCY=str(web),
        LOG_LEVEL="INFO",
        RECONCILE_LEASE_SECONDS="15",
        API_THROTTLE_WRITES="1000000/minute",
        API_THROTTLE_READS="1000000/minute",
    )
    fleet = harness.Fleet(env, logdir)
    keep_logs = False  # kept (and named in the result) when a must-be-0 figure is not 0
    names = [f"w{i + 1}" for i in range(workers)]
    disruptions: list[dict[str, Any]] = []
    failures: list[str] = []
    load_before = round(os.getloadavg()[0], 2)
    busy_before = cpu_busy_pct(5)
    try:
        fleet.web()
        for b in range(beats):
            fleet.beat(f"beat-{b + 1}")
        for name in names:
            fleet.worker(name)
        fleet.wait_web()
        for name in names:
            fleet.wait_ready(name)
        time.sleep(1)  # beat's first sweeps
        with Load() as load:
            t0 = time.time()

            def chaos() -> None:
                try:
                    time.sleep(2)
                    at, left = time.time() - t0, pending(users, n)
                    fleet.kill(names[-1])  # a node lost, early, so that it lands mid-step
                    disruptions.append(
                        {"signal": "SIGKILL", "worker": names[-1], "at_s": round(at, 1), "pending": left}
                    )
                    fleet.worker(names[-1])
                    for name in names:  # then a rolling update, one worker at a time
                        fleet.wait_ready(name)
                        at, left = time.time() - t0, pending(users, n)
                        m0 = time.perf_counter()
                        rc = fleet.terminate(name, timeout=90)
                        exit_s = time.perf_counter() - m0
                        disruptions.append(
                            {"signal": "SIGTERM", "worker": name, "at_s": round(at, 1), "pending": left,
                             "exit_code": rc, "exit_s": round(exit_s, 2)}
                        )  # fmt: skip
                        if rc != 0:
                            failures.append(f"{name} exited {rc} on SIGTERM:\n{fleet.log(name)[-2000:]}")
                        fleet.worker(name)
                        fleet.wait_ready(name)
                except Exception as exc:  # reported, not raised in a thread
                    failures.append(f"disruption failed: {exc!r}")
                finally:
                    connection.close()

            creates, clients = harness.create_projects(port, tokens, per_user, name="Bench")
            disruptor = threading.Thread(target=chaos, daemon=True) if disrupt else None
            if disruptor:
                disruptor.start()
            for t in clients:
                t.join(600)
            created = list(creates.started)
            if disruptor:
                disruptor.join(600)
            left = harness.wait_all_running(created, timeout=120 + n * 0.3)
            load_max = load.max
        done = harness.running_at(created)
        t_last = max(done.values(), default=t0)
        to_running = [done[p] - creates.started[p] for p in created if p in done]
        objects, twice, resent = harness.duplicate_creates(kubesim.stats(), namespaces)
        result = {
            "label": label,
            "web": web,
            "workers": workers,
            "beats": beats,
            "n": n,
            "users": n_users,
            "sandboxes_per_s": round(len(done) / (t_last - t0), 1) if done else None,
            "running_p50_s": percentile(to_running, 50),
            "running_p95_s": percentile(to_running, 95),
            "running_max_s": round(max(to_running), 2) if to_running else None,
            "post_p50_ms": round(1000 * (percentile(creates.latencies, 50) or 0), 1),
            "post_p95_ms": round(1000 * (percentile(creates.latencies, 95) or 0), 1),
            "post_errors": len(creates.errors),
            "cluster_objects": objects,
            "dup_creates": len(twice),
            "creates_resent": len(resent),
            "dup_transitions": len(harness.duplicate_transitions(created)),
            "not_running": n - len(created) + len(left),
            "load_before": load_before,
            "cpu_busy_before_pct": busy_before,
            "load_max_during": load_max,
            "cpu_busy_during_pct": load.busy_pct,
            "elapsed_s": round(time.time() - t0, 1),
            "disruptions": disruptions,
            "disruptions_before_last_running": sum(1 for d in disruptions if d["at_s"] < t_last - t0),
            "not_running_reasons": list(
                Sandbox.objects.filter(project_id__in=created)
                .exclude(status="RUNNING")
                .values_list("status", "status_reason")[:10]
            ),
            "failures": failures + creates.errors[:5],
            "dup_examples": twice[:5],
        }
        for key in ("running_p50_s", "running_p95_s"):
            if result[key] is not None:
                result[key] = round(result[key], 2)
        if result["not_running"] or result["dup_creates"] or result["dup_transitions"] or failures:
            keep_logs = True
            result["logs"] = str(logdir)
        return result
    finally:
        fleet.close()
        cleanup(users)
        for ns in namespaces:
            kubesim.delete_namespace(ns)
        if not keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 projects over 10 users")
    ap.add_argument("--n", type=int, default=None, help="projects (default 1000; quick 200)")
    ap.add_argument(
        "--users", type=int, default=None, help="users = concurrent clients (default 20; quick 10)"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the one-process run")
    args = ap.parse_args(argv)
    n = args.n or (200 if args.quick else 1000)
    n_users = args.users or (10 if args.quick else 20)

    from kubesim.testing import start_kubesim

    leftovers = list(User.objects.filter(username__startswith=PREFIX))  # of an interrupted run
    if leftovers:
        cleanup(leftovers)
    kubesim, kproc, ktmp = start_kubesim(ready_after=0, simulate=True)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        rows.append(run(kubesim, "scale-out", n, n_users, web=2, workers=4, beats=2, disrupt=True))
        print(f"  [scale-out] {rows[-1]}", file=sys.stderr, flush=True)
        if not args.no_baseline:
            rows.append(run(kubesim, "one-process", n, n_users, web=1, workers=1, beats=1, disrupt=False))
            print(f"  [one-process] {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        kproc.terminate()
        try:
            kproc.wait(10)
        except Exception:
            kproc.kill()
        shutil.rmtree(ktmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_all
    print(
        table(
            f"scale-out: {n} projects created over HTTP by {n_users} concurrent clients",
            rows,
            [
                "label",
                "web",
                "workers",
                "beats",
                "sandboxes_per_s",
                "running_p50_s",
                "running_p95_s",
                "running_max_s",
                "post_p50_ms",
                "post_p95_ms",
                "dup_creates",
                "creates_resent",
                "dup_transitions",
                "not_running",
                "post_errors",
                "load_before",
                "cpu_busy_before_pct",
                "load_max_during",
                "cpu_busy_during_pct",
            ],
        )
    )
    scale = rows[0]
    print(
        table(
            "disruptions during the scale-out run (s after the first POST; pending = not RUNNING yet)",
            scale["disruptions"],
            ["signal", "worker", "at_s", "pending", "exit_code", "exit_s"],
        )
    )
    ratios: dict[str, Any] = {"readme_one_worker_per_s": README_ONE_WORKER_PER_S}
    if scale.get("sandboxes_per_s"):
        ratios["vs_readme_one_worker"] = round(scale["sandboxes_per_s"] / README_ONE_WORKER_PER_S, 2)
        base = next((r for r in rows if r["label"] == "one-process"), None)
        if base and base.get("sandboxes_per_s"):
            ratios["vs_one_process_throughput"] = round(scale["sandboxes_per_s"] / base["sandboxes_per_s"], 2)
            ratios["vs_one_process_p95"] = round(base["running_p95_s"] / scale["running_p95_s"], 2)
    print("ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    for r in rows:
        for f in r["failures"]:
            print(f"[{r['label']}] {f}", file=sys.stderr)
    out = write_result(
        "scaleout",
        {
            "quick": args.quick,
            "elapsed_s": round(elapsed, 1),
            "results": rows,
            "ratios": ratios,
            "notes": __doc__,
        },
    )
    print(f"wrote {out.relative_to(ROOT)} in {elapsed:.0f} s")
    bad = [
        r["label"]
        for r in rows
        if r["dup_creates"] or r["dup_transitions"] or r["not_running"] or r["post_errors"] or r["failures"]
    ]
    if bad:
        print(f"[scale-out] correctness figures not zero in: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
