"""Task-engine throughput (issue 13): real Celery workers + beat running skill installs through the
gateway's exec in kubesim --simulate pods.

Run: python benchmarks/bench_tasks.py [--quick] [--n 20,100] [--workers 1,4] [--repeats 3]

For each worker count W (solo-pool workers and one beat, as in bench_reconcile.py) and each N: one user
with N RUNNING projects (created and reconciled first, not measured) enables a skill whose install
command writes a marker file; the clock starts at that request's commit.

Figures (median over the repeats):
- tasks_per_s: N / (last task finished - commit);
- done_p50/p95_s: a task's finished_at - commit;
- exec_p50/p95_s: an attempt's duration (the exec round trip through kubesim, the command included);
- enable_s: the enable call itself (one transaction, N tasks bulk-created);
- failed: tasks not SUCCEEDED in the end (must be 0); attempts_per_task (must be 1.0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_reconcile as br
from common import median_runs, percentile, table, write_result
from django.db import transaction

from core.audit import SYSTEM
from projects.models import ProjectTask, ProjectTaskAttempt, Skill
from projects.services import project_create
from projects.task_services import skill_enable


def run(kubesim: Any, n: int) -> dict[str, Any]:
    user, ns = br.fresh_user(kubesim)
    try:
        with transaction.atomic():
            for i in range(n):
                project_create(owner=user, name=f"Tasks {i}", actor=SYSTEM)
        if not br.wait_running([user], n, timeout=60 + n * 0.5):
            raise RuntimeError("sandboxes did not all reach RUNNING")
        skill, _ = Skill.objects.get_or_create(
            slug="bench-marker",
            defaults={
                "name": "Bench marker",
                "install_command": "mkdir -p .claude/skills/bench && echo ok > .claude/skills/bench/SKILL.md",
                "uninstall_command": "rm -rf .claude/skills/bench",
            },
        )
        commit: list[float] = []
        t0 = time.perf_counter()
        with transaction.atomic():
            transaction.on_commit(lambda: commit.append(time.time()))
            skill_enable(user=user, skill_id=skill.pk, actor=SYSTEM)
        enable_s = time.perf_counter() - t0
        tasks = ProjectTask.objects.filter(project__owner=user)
        deadline = time.monotonic() + 60 + n
        while time.monotonic() < deadline and tasks.filter(status__in=["SUCCEEDED", "FAILED"]).count() < n:
            time.sleep(0.2)
        done = [
            t.timestamp() - commit[0]
            for t in tasks.filter(status="SUCCEEDED").values_list("finished_at", flat=True)
        ]
        durations = list(
            ProjectTaskAttempt.objects.filter(task__project__owner=user).values_list("duration", flat=True)
        )
        return {
            "n": n,
            "enable_s": round(enable_s, 3),
            "tasks_per_s": round(len(done) / max(done), 1) if done else None,
            "done_p50_s": percentile(done, 50),
            "done_p95_s": percentile(done, 95),
            "exec_p50_s": percentile([d for d in durations if d is not None], 50),
            "exec_p95_s": percentile([d for d in durations if d is not None], 95),
            "attempts_per_task": round(len(durations) / n, 2),
            "failed": n - len(done),
        }
    finally:
        ProjectTask.objects.filter(project__owner=user).delete()
        br.cleanup(user, ns, kubesim)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", default=None, help="comma-separated task counts (default 20,100; quick 10)")
    ap.add_argument("--workers", default=None, help="worker counts (default 1,4; quick 2)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    ns_ = [int(x) for x in (args.n or ("10" if args.quick else "20,100")).split(",")]
    ws = [int(x) for x in (args.workers or ("2" if args.quick else "1,4")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    from kubesim.testing import start_kubesim

    kubesim, kproc, ktmp = start_kubesim(ready_after=0, simulate=True)
    rows = []
    try:
        for w in ws:
            br.flush_broker()
            workers = br.Workers(w, {})
            try:
                time.sleep(1.0)
                for n in ns_:
                    runs = []
                    for r in range(repeats):
                        res = run(kubesim, n)
                        print(f"  [W={w} N={n} run {r + 1}] {res}", file=sys.stderr, flush=True)
                        runs.append(res)
                    rows.append({"workers": w, **median_runs(runs)})
            finally:
                workers.close()
    finally:
        br.stop(kproc)
        br.shutil.rmtree(ktmp, ignore_errors=True)
    cols = ["workers", "n", "tasks_per_s", "done_p50_s", "done_p95_s", "exec_p50_s", "exec_p95_s", "enable_s"]
    cols += ["attempts_per_task", "failed"]
    print(table("Task engine: skill installs through the workers and kubesim exec", rows, cols))
    result = {"rows": rows}
    write_result("bench_tasks", result)
    return result


if __name__ == "__main__":
    main()
