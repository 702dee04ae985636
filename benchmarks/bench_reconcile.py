"""Reconcile throughput and latency (issue 4): real Celery workers + celery beat against kubesim --simulate.

Run: python benchmarks/bench_reconcile.py [--quick] [--n 100,1000] [--workers 1,2,4] [--repeats 3]
     [--configs tenter,reference]

For each engine configuration (`tenter`: the settings defaults; `reference`: batch 10, sweep 7 s, lease 5 s,
no kick on commit; `serial`, on request: the defaults with one step at a time) and each worker count W, it
starts W `celery worker --pool solo` processes (through
benchmarks/celery_counted.py, which counts SQL queries and steps in each worker) and one `celery beat`,
then for each N:

- creates one user whose kubeconfig points at a fresh kubesim namespace (ready_after=0, simulate),
- calls projects.services.project_create N times inside ONE transaction (so all N become visible at the
  same instant, the commit; with kicks on, the N kicks are sent right after it),
- waits until all N sandboxes are RUNNING, and reads the ResourceEvent timeline.

Figures (median over the repeats):
- sandboxes_per_s: N / (last RUNNING event - commit).
- running_p50/p95_s: RUNNING event - commit, per sandbox. (The CREATING events are stamped inside the
  one creating transaction, i.e. before the rows were visible to any worker, so the commit instant is
  the start: it is >= every CREATING event.)
- pickup_p50/p95_s (batch): CREATING->STARTING event - commit, i.e. commit to the end of the first
  reconcile step (the step that applies the objects and records STARTING). Under a burst of N this
  includes queueing behind the other sandboxes.
- idle pickup (the `trickle` rows): sandboxes created one per transaction, 0.5 s apart, on an idle
  system; pickup = CREATING->STARTING event - that transaction's commit.
- k8s_req_per_sbx: kubesim request count (stats total, reset before the commit) / N.
- sql_per_sbx: SQL queries executed by the worker processes between two snapshots around the run / N
  (includes the beat sweeps that ran meanwhile).
- dup_creates: kubesim by_object entries "create <resource> ns/name" with a count > 1 (must be 0).

Every figure is the median over --repeats runs (default 3, or BENCH_RECONCILE_REPEATS; --quick 1), with
the min-max spread of the headline ones (`*_range`). Both configurations run every N and worker count
in the same invocation. Each run records the machine's load: the 1-min load average and the CPU busy
over 2 s just before the commit (`load_before`, `cpu_before_pct`: other people's work, ours is idle then)
and during the run (`load_max_during`, `cpu_during_pct`); a run that started on a busy machine is marked
`busy` and the output ends with a loud BUSY MACHINE line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PY,
    ROOT,
    LoadMonitor,
    bench_env,
    busy_banner,
    checked_kubeconfig,
    median_runs,
    percentile,
    setup_django,
    spread,
    stop,
    table,
    write_result,
)

RECONCILE_KEYS = (
    "RECONCILE_BATCH_SIZE",
    "RECONCILE_LEASE_SECONDS",
    "RECONCILE_SWEEP_SECONDS",
    "RECONCILE_KICK_ON_COMMIT",
    "RECONCILE_POLL_SECONDS",
    "RECONCILE_USER_CONCURRENCY",
    "RECONCILE_ACT_CONCURRENCY",
)
REFERENCE = {
    "RECONCILE_BATCH_SIZE": "10",
    "RECONCILE_SWEEP_SECONDS": "7",
    "RECONCILE_LEASE_SECONDS": "5",
    "RECONCILE_KICK_ON_COMMIT": "false",
    # The reference claims whole batches with no per-owner cap: without this, Tenter's fairness cap (4
    # rows of one owner under lease) would throttle the reference's one-namespace burst to 4 rows a sweep.
    "RECONCILE_USER_CONCURRENCY": "10",
}

for _k in RECONCILE_KEYS:  # `tenter` means the settings defaults: don't inherit stray overrides
    os.environ.pop(_k, None)
os.environ.update(bench_env())
setup_django()

from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from core.audit import SYSTEM  # noqa: E402
from projects.models import Project, Quota  # noqa: E402
from projects.services import project_create  # noqa: E402
from sandboxes.models import ResourceEvent, Sandbox  # noqa: E402
from userconfig.models import User  # noqa: E402

# Not run by default: Tenter's defaults with the batch's steps one after another, which shows what the
# concurrent act buys (`--configs tenter,serial,reference`).
SERIAL = {"RECONCILE_ACT_CONCURRENCY": "1"}


def config_env(name: str) -> dict[str, str]:
    if name == "reference":
        return dict(REFERENCE)
    if name == "serial":
        return dict(SERIAL)
    if name != "tenter":
        raise SystemExit(f"unknown configuration {name!r}: tenter, reference or serial")
    return {}


class Workers:
    """W celery workers (solo pool, instrumented) and one celery beat, all with the same settings."""

    def __init__(self, count: int, extra_env: dict[str, str]):
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        self.env = {**bench_env(), **extra_env, "BENCH_STATS_DIR": str(self.tmp)}
        for k in RECONCILE_KEYS:
            if k not in extra_env:
                self.env.pop(k, None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = []
        queue = self.env["CELERY_QUEUE"]
        tag = uuid.uuid4().hex[:6]
        for i in range(count):
            log = open(self.tmp / f"worker{i}.log", "wb")  # noqa: SIM115
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "celery",
                        "-A",
                        "benchmarks.celery_counted",
                        "worker",
                        "--pool",
                        "solo",
                        "-Q",
                        queue,
                        "-n",
                        f"bench{i}-{tag}@%h",
                        "--loglevel",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        log = open(self.tmp / "beat.log", "wb")  # noqa: SIM115
        self.logs.append(log)
        self.beat = subprocess.Popen(
            [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-s",
                str(self.tmp / "beat-schedule"),
                "--pidfile",
                str(self.tmp / "beat.pid"),
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not all((self.tmp / f"worker-{p.pid}.json").exists() for p in self.procs):
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"worker exited: {(self.tmp / 'worker0.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not become ready in 60 s")
            time.sleep(0.1)

    def _read(self, pid: int) -> dict[str, Any]:
        return json.loads((self.tmp / f"worker-{pid}.json").read_text())

    def snapshot(self) -> dict[str, Any]:
        """Ask every worker for its counters (SIGUSR2) and sum them."""
        seqs = {p.pid: self._read(p.pid)["seq"] for p in self.procs}
        for p in self.procs:
            os.kill(p.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 60
        snaps = {}
        while len(snaps) < len(self.procs) and time.monotonic() < deadline:
            for p in self.procs:
                if p.pid not in snaps:
                    try:
                        d = self._read(p.pid)
                    except (OSError, ValueError):
                        continue
                    if d["seq"] > seqs[p.pid]:
                        snaps[p.pid] = d
            time.sleep(0.02)
        total: dict[str, Any] = {"queries": 0, "steps": 0, "tasks": 0, "rss_kb": []}
        for d in snaps.values():
            total["queries"] += d["queries"]
            total["steps"] += d["steps"]
            total["tasks"] += sum(d["tasks"].values())
            total["rss_kb"].append(d["rss_kb"])
        total["by_task"] = {}
        for d in snaps.values():
            for k, v in d["queries_by_task"].items():
                total["by_task"][k] = total["by_task"].get(k, 0) + v
        total["tasks_by_name"] = {}
        for d in snaps.values():
            for k, v in d["tasks"].items():
                total["tasks_by_name"][k] = total["tasks_by_name"].get(k, 0) + v
        return total

    def close(self) -> None:
        stop(self.beat)
        for p in self.procs:
            stop(p, 20)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


def fresh_user(kubesim: Any) -> tuple[User, str]:
    """A new user whose kubeconfig (check OK, no check task queued) points at a new kubesim namespace."""
    tag = uuid.uuid4().hex[:8]
    ns = kubesim.create_namespace(f"bench-{tag}")
    user = User.objects.create(username=f"bench-reconcile-{tag}")
    # a benchmark user creates far more sandboxes than the default quotas allow
    Quota.objects.create(
        user=user, max_projects=100_000, max_running_sandboxes=100_000, max_cpu="100000", max_memory="1Ei"
    )
    checked_kubeconfig(user, kubesim.kubeconfig(ns))
    return user, ns


def cleanup(user: User, ns: str, kubesim: Any) -> None:
    ids = list(Sandbox.objects.filter(project__owner=user).values_list("pk", flat=True))
    with transaction.atomic():
        Project.objects.filter(owner=user).delete()
        ResourceEvent.objects.filter(resource_id__in=ids).delete()
        User.objects.filter(pk=user.pk).delete()
    kubesim.delete_namespace(ns)


def wait_running(users: list[User], n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Sandbox.objects.filter(project__owner__in=users, status="RUNNING").count() >= n:
            return True
        time.sleep(0.2)
    return False


def duplicate_creates(stats: dict[str, Any]) -> int:
    return sum(1 for k, v in stats.get("by_object", {}).items() if k.startswith("create ") and v > 1)


def timeline(users: list[User]) -> dict[str, dict[str, float]]:
    ids = list(Sandbox.objects.filter(project__owner__in=users).values_list("pk", flat=True))
    out: dict[str, dict[str, float]] = {str(i): {} for i in ids}
    for rid, to_status, at in ResourceEvent.objects.filter(resource_id__in=ids).values_list(
        "resource_id", "to_status", "created_at"
    ):
        out[str(rid)].setdefault(to_status, at.timestamp())  # first time it reached the status
    return out


def run_burst(kubesim: Any, workers: Workers, n: int, kick: bool, per_user: int) -> dict[str, Any]:
    settings.RECONCILE_KICK_ON_COMMIT = kick
    owners = [fresh_user(kubesim) for _ in range(max(1, -(-n // per_user)))]
    users = [u for u, _ in owners]
    try:
        kubesim.reset_stats()
        before = workers.snapshot()
        load = LoadMonitor()
        commit: list[float] = []
        t0 = time.perf_counter()
        with transaction.atomic():
            transaction.on_commit(lambda: commit.append(time.time()))  # runs first after COMMIT
            for i in range(n):
                project_create(owner=users[i % len(users)], name=f"Bench {i}", actor=SYSTEM)
        create_s = time.perf_counter() - t0
        complete = wait_running(users, n, timeout=60 + n * 0.3)
        machine_load = load.finish()
        after = workers.snapshot()
        stats = kubesim.stats()
        events = timeline(users)
        t_commit = commit[0]
        running = [e["RUNNING"] - t_commit for e in events.values() if "RUNNING" in e]
        pickup = [e["STARTING"] - t_commit for e in events.values() if "STARTING" in e]
        return {
            "n": n,
            "namespaces": len(users),
            "complete": complete,
            "create_s": round(create_s, 2),
            "sandboxes_per_s": round(len(running) / max(running), 1) if running else None,
            "running_p50_s": percentile(running, 50),
            "running_p95_s": percentile(running, 95),
            "pickup_p50_s": percentile(pickup, 50),
            "pickup_p95_s": percentile(pickup, 95),
            "k8s_req_per_sbx": round(stats["total"] / n, 2),
            "sql_per_sbx": round((after["queries"] - before["queries"]) / n, 2),
            "steps_per_sbx": round((after["steps"] - before["steps"]) / n, 2),
            "tasks_per_sbx": round((after["tasks"] - before["tasks"]) / n, 2),
            "dup_creates": duplicate_creates(stats),
            "not_running": n - len(running),
            "worker_rss_mb": round(max(x for x in after["rss_kb"] if x) / 1024, 1),
            **machine_load,
        }
    finally:
        for user, ns in owners:
            cleanup(user, ns, kubesim)


def run_trickle(kubesim: Any, workers: Workers, k: int, kick: bool, gap: float = 0.5) -> dict[str, Any]:
    settings.RECONCILE_KICK_ON_COMMIT = kick
    user, ns = fresh_user(kubesim)
    try:
        load = LoadMonitor()
        commits: dict[str, float] = {}
        for i in range(k):
            box: list[float] = []
            with transaction.atomic():
                transaction.on_commit(lambda box=box: box.append(time.time()))
                project = project_create(owner=user, name=f"Trickle {i}", actor=SYSTEM)
            commits[str(Sandbox.objects.get(project=project).pk)] = box[0]
            time.sleep(gap)
        wait_running([user], k, timeout=60)
        machine_load = load.finish()
        events = timeline([user])
        pickup = [e["STARTING"] - commits[rid] for rid, e in events.items() if "STARTING" in e]
        running = [e["RUNNING"] - commits[rid] for rid, e in events.items() if "RUNNING" in e]
        return {
            "n": k,
            "pickup_p50_s": percentile(pickup, 50),
            "pickup_p95_s": percentile(pickup, 95),
            "pickup_max_s": max(pickup) if pickup else None,
            "running_p50_s": percentile(running, 50),
            "running_p95_s": percentile(running, 95),
            **machine_load,
        }
    finally:
        cleanup(user, ns, kubesim)


SPREAD = ("sandboxes_per_s", "running_p95_s", "pickup_p95_s")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every figure over the runs, the min-max spread of the headline ones, and whether any
    run started on a busy machine."""
    out = median_runs(runs)
    for key in SPREAD:
        out[f"{key}_range"] = spread(runs, key)
    out["busy"] = any(r.get("busy") for r in runs)
    out["load_before"] = max(r.get("load_before") or 0 for r in runs)
    out["cpu_before_pct"] = max(r.get("cpu_before_pct") or 0 for r in runs)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--n", default=None, help="comma-separated sandbox counts (default 100,1000; quick 10,100)"
    )
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--configs", default="tenter,reference")
    ap.add_argument(
        "--per-user",
        type=int,
        default=1000,
        help="sandboxes per user/namespace (default 1000: one user, one namespace, as in the issue)",
    )
    ap.add_argument(
        "--trickle", type=int, default=None, help="sandboxes in the idle-pickup run (10; quick 4)"
    )
    args = ap.parse_args(argv)
    ns_ = [int(x) for x in (args.n or ("10,100" if args.quick else "100,1000")).split(",")]
    ws = [int(x) for x in args.workers.split(",")]
    repeats = args.repeats or (1 if args.quick else int(os.environ.get("BENCH_RECONCILE_REPEATS") or 3))
    trickle_k = args.trickle or (4 if args.quick else 10)
    configs = args.configs.split(",")

    from kubesim.testing import start_kubesim

    # leftovers of an interrupted run (their kubesim is gone)
    for old in User.objects.filter(username__startswith="bench-reconcile-"):
        ids = list(Sandbox.objects.filter(project__owner=old).values_list("pk", flat=True))
        Project.objects.filter(owner=old).delete()
        ResourceEvent.objects.filter(resource_id__in=ids).delete()
        old.delete()
    kubesim, kproc, ktmp = start_kubesim(ready_after=0, simulate=True)
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        for cfg in configs:
            extra = config_env(cfg)
            kick = extra.get("RECONCILE_KICK_ON_COMMIT", "true") != "false"
            for w in ws:
                flush_broker()
                workers = Workers(w, extra)
                try:
                    time.sleep(1.0)  # let beat send its first sweeps
                    for n in ns_:
                        runs = []
                        for r in range(repeats):
                            res = run_burst(kubesim, workers, n, kick, args.per_user)
                            print(f"  [{cfg} W={w} N={n} run {r + 1}] {res}", file=sys.stderr, flush=True)
                            raw.append({"config": cfg, "workers": w, "kind": "burst", **res})
                            runs.append(res)
                        rows.append({"config": cfg, "workers": w, "kind": "burst", **summary(runs)})
                    if w != max(ws):  # idle pickup does not depend on the worker count
                        continue
                    runs = []
                    for r in range(repeats):
                        res = run_trickle(kubesim, workers, trickle_k, kick)
                        print(f"  [{cfg} W={w} trickle run {r + 1}] {res}", file=sys.stderr, flush=True)
                        raw.append({"config": cfg, "workers": w, "kind": "trickle", **res})
                        runs.append(res)
                    rows.append({"config": cfg, "workers": w, "kind": "trickle", **summary(runs)})
                finally:
                    workers.close()
    finally:
        stop(kproc)
        shutil.rmtree(ktmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_all

    burst = [r for r in rows if r["kind"] == "burst"]
    trickle = [r for r in rows if r["kind"] == "trickle"]
    print(
        table(
            "reconcile: N sandboxes created in one transaction (median of runs)",
            burst,
            [
                "config",
                "workers",
                "n",
                "namespaces",
                "sandboxes_per_s",
                "sandboxes_per_s_range",
                "running_p50_s",
                "running_p95_s",
                "running_p95_s_range",
                "pickup_p95_s",
                "k8s_req_per_sbx",
                "sql_per_sbx",
                "steps_per_sbx",
                "tasks_per_sbx",
                "dup_creates",
                "not_running",
                "load_before",
                "cpu_before_pct",
                "load_max_during",
                "cpu_during_pct",
                "busy",
                "runs",
            ],
        )
    )
    print(
        table(
            f"reconcile: idle pickup, {trickle_k} sandboxes created 0.5 s apart (median of runs)",
            trickle,
            [
                "config",
                "workers",
                "n",
                "pickup_p50_s",
                "pickup_p95_s",
                "pickup_p95_s_range",
                "pickup_max_s",
                "running_p95_s",
                "load_before",
                "busy",
                "runs",
            ],
        )
    )
    ratios = []
    for w in ws:
        for n in ns_:
            a = next(
                (r for r in burst if r["config"] == "tenter" and r["workers"] == w and r["n"] == n), None
            )
            b = next(
                (r for r in burst if r["config"] == "reference" and r["workers"] == w and r["n"] == n), None
            )
            if a and b and a.get("sandboxes_per_s") and b.get("sandboxes_per_s"):
                ratios.append(
                    {
                        "workers": w,
                        "n": n,
                        "throughput_ratio": round(a["sandboxes_per_s"] / b["sandboxes_per_s"], 2),
                        "running_p95_ratio": round(b["running_p95_s"] / a["running_p95_s"], 2),
                        "tenter_per_s": a["sandboxes_per_s"],
                        "reference_per_s": b["sandboxes_per_s"],
                        "tenter_p95_s": a["running_p95_s"],
                        "reference_p95_s": b["running_p95_s"],
                        "ahead": a["sandboxes_per_s"] > b["sandboxes_per_s"]
                        and a["running_p95_s"] < b["running_p95_s"],
                    }
                )
    if ratios:
        print(
            table(
                "tenter vs reference (throughput x, p95 time-to-RUNNING x faster)",
                ratios,
                [
                    "workers",
                    "n",
                    "tenter_per_s",
                    "reference_per_s",
                    "throughput_ratio",
                    "tenter_p95_s",
                    "reference_p95_s",
                    "running_p95_ratio",
                    "ahead",
                ],
            )
        )
    print(busy_banner(raw))
    settings_used = {
        "tenter": {k: getattr(settings, k) for k in RECONCILE_KEYS},
        "reference": {**{k: getattr(settings, k) for k in RECONCILE_KEYS}, **REFERENCE},
    }
    settings_used["tenter"]["RECONCILE_KICK_ON_COMMIT"] = True
    out = write_result(
        "reconcile",
        {
            "quick": args.quick,
            "repeats": repeats,
            "elapsed_s": round(elapsed, 1),
            "settings": settings_used,
            "results": rows,
            "ratios": ratios,
            "busy": any(r.get("busy") for r in raw),
            "runs": raw,
            "notes": __doc__,
        },
    )
    print(f"wrote {out.relative_to(ROOT)} in {elapsed:.0f} s")
    return {"rows": rows}


if __name__ == "__main__":
    main()
