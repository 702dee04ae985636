"""Run the Tenter benchmarks: `make bench` calls this with DATABASE_URL / REDIS_URL set.

    python benchmarks/run.py                      # every benchmark, full size
    python benchmarks/run.py --quick              # ~10x smaller smoke run
    python benchmarks/run.py bench_api --quick    # only the named ones (bench_ prefix optional)

Each benchmark runs in its own process against the bench database (tenter_bench), Redis db 5 and the
Celery queue tenter-bench (see benchmarks/common.py), prints its tables and writes
benchmarks/results/<name>.json with the machine it ran on. Figures are medians of several runs
(3 by default, 1 with --quick). Benchmarks print figures; they never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, RESULTS, ROOT, bench_env, ensure_database, machine, table

BENCHMARKS = [
    "bench_kubesim",
    "bench_exec",
    "bench_reconcile",
    "bench_scaleout",
    "bench_tasks",
    "bench_warm",
    "bench_verify",
    "bench_api",
    "bench_memory",
]
# Programs a benchmark needs beyond pyproject.toml (`make bench` installs them with apt-get when it can).
NEEDS = {"bench_api": ["wrk"], "bench_memory": ["wrk"]}


def missing_requirements(names: list[str]) -> list[str]:
    """Why any of the chosen benchmarks cannot run, checked before the first one starts."""
    return [
        f"{name} needs `{program}` (Debian package {program}), which is not on PATH"
        for name in names
        for program in NEEDS.get(name, [])
        if not shutil.which(program)
    ]


def run_kubesim(env: dict[str, str], quick: bool) -> int:
    """bench_kubesim.py is a standalone script with one run per call: run it several times and take the
    median of every figure, then rewrite its JSON with the machine record."""
    repeats = 1 if quick else 3
    args = ["--n", "50", "--fill", "1000"] if quick else ["--n", "300", "--fill", "5000"]
    outs = []
    for i in range(repeats):
        proc = subprocess.run(
            [PY, "benchmarks/bench_kubesim.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if proc.returncode:
            sys.stdout.write(proc.stdout + proc.stderr)
            return proc.returncode
        outs.append(json.loads((RESULTS / "kubesim.json").read_text()))
        print(f"  [kubesim run {i + 1}] done", file=sys.stderr, flush=True)
    merged = {}
    for op in outs[0]["results"]:
        keys = outs[0]["results"][op]
        merged[op] = {
            k: statistics.median(o["results"][op][k] for o in outs)
            if all(isinstance(o["results"][op][k], (int, float)) for o in outs)
            else keys[k]
            for k in keys
        }
        merged[op]["runs"] = len(outs)
    rows = [{"operation": op, **r} for op, r in merged.items()]
    print(
        table(
            "kubesim through the official client (median of runs)",
            rows,
            ["operation", "n", "rps", "median_ms", "p90_ms", "p99_ms", "server_median_ms", "runs"],
        )
    )
    data = {
        **outs[-1],
        "benchmark": "kubesim",
        "machine": machine(),
        "quick": quick,
        "args": args,
        "results": merged,
        "repeats": repeats,
    }
    (RESULTS / "kubesim.json").write_text(json.dumps(data, indent=2))
    print("wrote benchmarks/results/kubesim.json")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    ap.add_argument("--quick", action="store_true", help="scale everything down ~10x (smoke run)")
    args, passthrough = ap.parse_known_args()
    names = [n if n.startswith("bench_") else f"bench_{n}" for n in args.names] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    missing = missing_requirements(names)
    if missing:
        print("[bench] cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    env = bench_env()
    print(
        f"[bench] database {env['DATABASE_URL']}, broker {env['REDIS_URL']}, queue {env['CELERY_QUEUE']}",
        flush=True,
    )
    ensure_database(env)
    RESULTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    failed = []
    t_all = time.perf_counter()
    for name in names:
        print(f"\n[bench] {name}{' (quick)' if args.quick else ''} ...", flush=True)
        t0 = time.perf_counter()
        if name == "bench_kubesim":
            rc = run_kubesim(env, args.quick)
        else:
            cmd = [PY, f"benchmarks/{name}.py", *(["--quick"] if args.quick else []), *passthrough]
            rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        timings[name] = round(time.perf_counter() - t0, 1)
        if rc:
            failed.append(name)
        status = f"FAILED (exit {rc})" if rc else "done"
        print(f"[bench] {name}: {status} in {timings[name]:.0f} s", flush=True)
    total = time.perf_counter() - t_all
    print(f"\n[bench] total {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    (RESULTS / "run.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "quick": args.quick,
                "seconds": timings,
                "total_s": round(total, 1),
                "failed": failed,
                "loadavg_at_end": os.getloadavg(),
            },
            indent=2,
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
