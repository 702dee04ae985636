"""Memory growth (issue 7): Celery worker RSS over reconcile steps, gunicorn worker RSS over API requests.

Run: python benchmarks/bench_memory.py [--quick] [--steps 1000,10000] [--requests 10000,100000]
     [--repeats 3] [--only worker|web]

Worker: one `celery worker --pool solo` (benchmarks/celery_counted.py: counts steps = calls of
reconcile.engine.record_all, reports its own RSS on SIGUSR2) reconciles 20 sandboxes whose image contains
`kubesim-fail-crashloop`, so on kubesim --simulate their pod runs but never becomes ready and every step
is a STARTING poll (GET StatefulSet, pod failure lookup, record) with RECONCILE_POLL_SECONDS=0.02, kicks
on. RSS is read when the worker has done >= the first and >= the second number of steps.
Web: gunicorn as in bench_api (2 sync workers, DEBUG=false) on the bench_api data set, driven
by wrk (10 clients) with a mix of GET /api/v1/projects, GET /api/v1/projects/{id} and the status poll;
RSS of each gunicorn worker (mean over the 4) after the first and the second number of requests.
Growth = (RSS at the second checkpoint - RSS at the first) / RSS at the first. Median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api
from common import ROOT, median_runs, rss_mb, stop, table, write_result

bench_api.setup()  # production-like settings (DEBUG off, keys) in this process too

import bench_reconcile  # noqa: E402  (Workers, fresh_user, cleanup, flush_broker)
from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from core.audit import SYSTEM  # noqa: E402
from projects.services import project_create  # noqa: E402

NEVER_READY_IMAGE = "registry.example.test/kubesim-fail-crashloop:1"


def worker_run(kubesim: Any, checkpoints: list[int], sandboxes: int = 20) -> dict[str, Any]:
    bench_reconcile.flush_broker()
    workers = bench_reconcile.Workers(
        1, {"RECONCILE_POLL_SECONDS": "0.02", "RUNTIME_IMAGE": NEVER_READY_IMAGE}
    )
    user, ns = bench_reconcile.fresh_user(kubesim)
    settings.RUNTIME_IMAGE = NEVER_READY_IMAGE
    settings.RECONCILE_KICK_ON_COMMIT = True
    out: dict[str, Any] = {}
    try:
        start = workers.snapshot()
        out["rss_start_mb"] = round(start["rss_kb"][0] / 1024, 1)
        t0 = time.perf_counter()
        with transaction.atomic():
            for i in range(sandboxes):
                project_create(owner=user, name=f"Memory {i}", actor=SYSTEM)
        deadline = time.monotonic() + 60 + checkpoints[-1] / 10
        for cp in checkpoints:
            while True:
                snap = workers.snapshot()
                steps = snap["steps"] - start["steps"]
                if steps >= cp or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            out[f"rss_at_{cp}_mb"] = round(snap["rss_kb"][0] / 1024, 1)
            out[f"steps_at_{cp}"] = steps
        out["steps_per_s"] = round(steps / (time.perf_counter() - t0), 1)
        a, b = out[f"rss_at_{checkpoints[0]}_mb"], out[f"rss_at_{checkpoints[-1]}_mb"]
        out["growth_pct"] = round((b - a) / a * 100, 2)
        out["queries_per_step"] = round((snap["queries"] - start["queries"]) / max(1, steps), 2)
    finally:
        settings.RECONCILE_KICK_ON_COMMIT = False  # no kicks from the cleanup
        workers.close()
        bench_reconcile.cleanup(user, ns, kubesim)
    return out


def web_run(data: dict[str, Any], checkpoints: list[int]) -> dict[str, Any]:
    lines = []
    for name in ("list_projects", "get_project", "status_poll"):
        lines += bench_api.request_lines(name, data)[:200]
    server = bench_api.Gunicorn()
    out: dict[str, Any] = {}
    try:
        pids = server.worker_pids()
        time.sleep(0.5)
        out["rss_start_mb"] = round(sum(rss_mb(p) or 0 for p in pids) / len(pids), 1)
        done, rps = 0, 200.0
        t0 = time.perf_counter()
        for cp in checkpoints:
            while done < cp:
                secs = max(1.0, min(30.0, (cp - done) / rps))
                r = bench_api.wrk(server.url, lines, 10, round(secs))
                done += r["requests"]
                rps = max(50.0, r["rps"])
            rss = [rss_mb(p) or 0 for p in pids]
            out[f"rss_at_{cp}_mb"] = round(sum(rss) / len(rss), 1)
            out[f"max_at_{cp}_mb"] = max(rss)
            out[f"requests_at_{cp}"] = done
        out["rps"] = round(done / (time.perf_counter() - t0), 1)
        a, b = out[f"rss_at_{checkpoints[0]}_mb"], out[f"rss_at_{checkpoints[-1]}_mb"]
        out["growth_pct"] = round((b - a) / a * 100, 2)
    finally:
        server.close()
        bench_api.flush_broker()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", default=None, help="worker checkpoints (1000,10000; quick 100,1000)")
    ap.add_argument("--requests", default=None, help="web checkpoints (10000,100000; quick 1000,10000)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (3; quick 1)")
    ap.add_argument("--only", choices=["worker", "web"], default=None)
    args = ap.parse_args(argv)
    steps = [int(x) for x in (args.steps or ("100,1000" if args.quick else "1000,10000")).split(",")]
    reqs = [int(x) for x in (args.requests or ("1000,10000" if args.quick else "10000,100000")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    t_all = time.perf_counter()
    result: dict[str, Any] = {"quick": args.quick, "repeats": repeats, "notes": __doc__}
    worker_rows, web_rows = [], []
    if args.only in (None, "worker"):
        from kubesim.testing import start_kubesim

        kubesim, kproc, ktmp = start_kubesim(ready_after=0, simulate=True)
        try:
            runs = []
            for r in range(repeats):
                res = worker_run(kubesim, steps)
                print(f"  [worker run {r + 1}] {res}", file=sys.stderr, flush=True)
                runs.append(res)
            worker_rows = [{"process": "celery worker (solo)", **median_runs(runs)}]
            result["worker_runs"] = runs
        finally:
            stop(kproc)
            shutil.rmtree(ktmp, ignore_errors=True)
    if args.only in (None, "web"):
        data = bench_api.seed()
        runs = []
        for r in range(repeats):
            res = web_run(data, reqs)
            print(f"  [web run {r + 1}] {res}", file=sys.stderr, flush=True)
            runs.append(res)
        web_rows = [{"process": "gunicorn worker (mean of 4)", **median_runs(runs)}]
        result["web_runs"] = runs
    elapsed = time.perf_counter() - t_all
    if worker_rows:
        print(
            table(
                f"worker RSS after {steps[0]} and {steps[-1]} reconcile steps (median of runs)",
                worker_rows,
                [
                    "process",
                    "rss_start_mb",
                    f"rss_at_{steps[0]}_mb",
                    f"rss_at_{steps[-1]}_mb",
                    "growth_pct",
                    "steps_per_s",
                    "queries_per_step",
                    "runs",
                ],
            )
        )
    if web_rows:
        print(
            table(
                f"web RSS after {reqs[0]} and {reqs[-1]} requests (median of runs)",
                web_rows,
                [
                    "process",
                    "rss_start_mb",
                    f"rss_at_{reqs[0]}_mb",
                    f"rss_at_{reqs[-1]}_mb",
                    f"max_at_{reqs[-1]}_mb",
                    "growth_pct",
                    "rps",
                    "runs",
                ],
            )
        )
    result.update(
        worker=worker_rows,
        web=web_rows,
        elapsed_s=round(elapsed, 1),
        goal="worker RSS growth < 10% between the checkpoints",
    )
    out = write_result("memory", result)
    print(f"wrote {out.relative_to(ROOT)} in {elapsed:.0f} s")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
