"""kubesim benchmark: request rate and latency through the official client (keep-alive, HTTPS).

Run: python benchmarks/bench_kubesim.py [--n 500] [--fill 10000]
Prints a table and writes benchmarks/results/kubesim.json. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from kubesim.testing import start_kubesim  # noqa: E402


def timed(fn, n: int) -> dict[str, float]:
    samples = []
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    samples.sort()
    return {
        "n": n,
        "rps": round(n / total, 1),
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "p90_ms": round(samples[int(0.9 * n)] * 1000, 3),
        "p99_ms": round(samples[min(n - 1, int(0.99 * n))] * 1000, 3),
    }


def server_ms(h) -> float | None:
    return h.stats()["server_ms"]["p50"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="requests per measured operation")
    ap.add_argument("--fill", type=int, default=10000, help="objects stored before the list/get measurements")
    args = ap.parse_args()

    handle, proc, _ = start_kubesim(simulate=False)
    results: dict[str, dict[str, float | None]] = {}
    try:
        handle.create_namespace("bench")
        handle.create_namespace("bulk")
        api = handle.api_client("bench")
        core = client.CoreV1Api(api)
        body = {"metadata": {"name": "cm"}, "data": {"k": "v"}}
        core.create_namespaced_config_map("bench", body)

        def run(name: str, fn, n: int = args.n) -> None:
            for i in range(min(20, n)):  # warm-up (connection, validators)
                fn(-1 - i)
            handle.reset_stats()
            r = timed(fn, n)
            r["server_median_ms"] = server_ms(handle)
            results[name] = r

        run("get configmap", lambda i: core.read_namespaced_config_map("cm", "bench"))
        run(
            "create configmap",
            lambda i: core.create_namespaced_config_map(
                "bench", {"metadata": {"name": f"c{i + 100}"}, "data": {"k": "v"}}
            ),
        )
        run(
            "patch configmap",
            lambda i: core.patch_namespaced_config_map("cm", "bench", {"data": {"k": str(i)}}),
        )
        run("list (empty namespace)", lambda i: core.list_namespaced_config_map("small"), n=args.n)

        # fill the store with many objects in another namespace
        t0 = time.perf_counter()

        def fill(chunk: range) -> None:
            c = client.CoreV1Api(handle.api_client("bulk"))
            for j in chunk:
                c.create_namespaced_config_map(
                    "bulk", {"metadata": {"name": f"b{j}", "labels": {"i": str(j)}}, "data": {"k": "v"}}
                )

        step = max(1, args.fill // 8)
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(fill, [range(s, min(args.fill, s + step)) for s in range(0, args.fill, step)]))
        fill_s = time.perf_counter() - t0
        handle.create_namespace("small")
        for j in range(10):
            core.create_namespaced_config_map("small", {"metadata": {"name": f"s{j}"}, "data": {"k": "v"}})
        run(f"get configmap ({args.fill} stored)", lambda i: core.read_namespaced_config_map("cm", "bench"))
        run(f"list 10 configmaps ({args.fill} stored)", lambda i: core.list_namespaced_config_map("small"))
        run(
            f"get configmap in the big namespace ({args.fill} stored)",
            lambda i: core.read_namespaced_config_map(f"b{abs(i) % args.fill}", "bulk"),
        )
        run(
            f"list big namespace with labelSelector ({args.fill} stored)",
            lambda i: core.list_namespaced_config_map("bulk", label_selector="i=7"),
            n=min(args.n, 50),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=5)

    cols = ("n", "rps", "median_ms", "p90_ms", "p99_ms", "server_median_ms")
    w = max(len(k) for k in results) + 2
    print("operation".ljust(w) + "".join(c.rjust(18) for c in cols))
    for name, r in results.items():
        print(name.ljust(w) + "".join(str(r.get(c)).rjust(18) for c in cols))
    print(f"filled {args.fill} objects in {fill_s:.1f}s ({args.fill / fill_s:.0f}/s with 8 threads)")
    out = ROOT / "benchmarks" / "results" / "kubesim.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "fill": {"objects": args.fill, "seconds": round(fill_s, 2)},
                "results": results,
                "notes": "median_ms/p90/p99: client-observed through kubernetes==36 ApiClient "
                "(HTTPS keep-alive); "
                "server_median_ms: time inside kubesim from parsed request to response written.",
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
