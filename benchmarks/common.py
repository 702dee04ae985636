"""Shared helpers for the benchmarks: environment, machine record, medians, tables, JSON results.

Every benchmark runs against its OWN database, Redis db and Celery queue so it never collides with
test suites running on the same machine:

- database: the name in DATABASE_URL is replaced by ``tenter_bench`` (override: BENCH_DATABASE_URL)
- Redis: the db number in REDIS_URL is replaced by 5 (override: BENCH_REDIS_URL)
- Celery queue: ``tenter-bench`` (override: BENCH_CELERY_QUEUE)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = "tenter_bench"
BENCH_REDIS_DB = 5
BENCH_QUEUE = "tenter-bench"


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def bench_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every benchmark process (and its children) runs with."""
    env = dict(os.environ if base is None else base)
    db = env.get("BENCH_DATABASE_URL") or _with_path(
        env.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/tenter", "/" + BENCH_DB
    )
    redis = env.get("BENCH_REDIS_URL") or _with_path(
        env.get("REDIS_URL") or "redis://127.0.0.1:6379/0", f"/{BENCH_REDIS_DB}"
    )
    env.update(
        DATABASE_URL=db,
        REDIS_URL=redis,
        CELERY_BROKER_URL=redis,
        CELERY_QUEUE=env.get("BENCH_CELERY_QUEUE", BENCH_QUEUE),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL=env.get("BENCH_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    # Production mode, as deployed: no debug cursor wrappers, real keys.
    env.setdefault("DEBUG", "false")
    env.setdefault("SECRET_KEY", "benchmark-secret-key-" + "x" * 40)
    env.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2htYXJrLW9ubHktZmllbGQta2V5LTAxMjM0NTY=")
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    env.setdefault("SECURE_SSL_REDIRECT", "false")  # plain HTTP on loopback
    env.setdefault("KUBE_EGRESS_ALLOW_CIDRS", "127.0.0.0/8")  # kubesim on loopback
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["BENCH_ENV_APPLIED"] = "1"
    return env


def setup_django() -> None:
    """Apply bench_env() to this process (once) and set Django up."""
    if not os.environ.get("BENCH_ENV_APPLIED"):
        os.environ.update(bench_env())
    import django

    django.setup()


def ensure_database(env: dict[str, str]) -> None:
    """Create the bench database when missing (the same way `make run` does), then migrate it quietly."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import devenv

    devenv.ensure_database(env)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=ROOT)


def machine() -> dict[str, Any]:
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over runs; other fields are taken from the first run."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r.get(key) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(vals):
            m = statistics.median(nums)
            out[key] = round(m, 3) if isinstance(m, float) else m
        elif all(isinstance(v, bool) for v in vals):
            out[key] = all(vals)
        else:
            out[key] = vals[0]
    out["runs"] = len(runs)
    return out


def table(title: str, rows: Iterable[dict[str, Any]], cols: Sequence[str]) -> str:
    rows = list(rows)
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = [f"== {title} =="]
    lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2, default=str))
    return out


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on {host}:{port} within {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Terminate one child we started (by its pid) and wait; kill it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def checked_kubeconfig(user: Any, text: str) -> Any:
    """Store `text` as the user's kubeconfig with its check already OK (no check task queued), as a
    benchmark's user whose cluster is kubesim needs it. Call after setup_django()."""
    from reconcile.kube import kubeconfig as kubeconfig_parse
    from userconfig.models import CheckStatus, ConfigKey, UserConfig

    info = kubeconfig_parse.parse(text)
    return UserConfig.objects.create(
        user=user,
        key=ConfigKey.KUBECONFIG,
        value=text,
        category="kc",
        is_secret=True,
        namespace=info.namespace,
        server=info.server,
        server_host=info.server_host,
        check_status=CheckStatus.OK,
    )


# --- The machine's load, before and during a measurement ----------------------------------------------
# Other work on the machine (a test suite, another benchmark) lowers every figure; a run says so.
BUSY_LOADAVG_PER_CORE = 0.5  # 1-min load average per core before the run above which it is "busy"
BUSY_CPU_PCT = 25.0  # or CPU busy (all cores) in the seconds before the run above this


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def cpu_busy_pct(seconds: float = 2.0) -> float:
    """CPU busy (all cores, %) over the next `seconds`: what the machine does while we do nothing."""
    b0, t0 = _cpu_times()
    time.sleep(seconds)
    b1, t1 = _cpu_times()
    return round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)


class Load:
    """While in the block: the 1-minute load average sampled every second and, at its end, the CPU busy
    share of the whole machine over the block (`busy_pct`)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> Load:
        self._cpu0 = _cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        b1, t1 = _cpu_times()
        self.busy_pct = round(100 * (b1 - self._cpu0[0]) / max(1, t1 - self._cpu0[1]), 1)

    @property
    def max(self) -> float:
        return round(max(self.samples, default=os.getloadavg()[0]), 2)


class LoadMonitor:
    """Record the machine's load before a measurement (load average, CPU busy over 2 s of our own
    idleness) and during it (load average max, CPU busy over the whole measurement). `busy` says whether
    something else was using the machine before we started."""

    def __init__(self, idle_probe_s: float = 2.0) -> None:
        self.loadavg_before = round(os.getloadavg()[0], 2)
        self.cpu_before = cpu_busy_pct(idle_probe_s)
        self._during = Load().__enter__()

    def finish(self) -> dict[str, Any]:
        self._during.__exit__()
        cores = os.cpu_count() or 1
        busy = self.loadavg_before > BUSY_LOADAVG_PER_CORE * cores or self.cpu_before > BUSY_CPU_PCT
        return {
            "load_before": self.loadavg_before,
            "cpu_before_pct": self.cpu_before,
            "load_max_during": max(self.loadavg_before, self._during.max),
            "cpu_during_pct": self._during.busy_pct,
            "busy": busy,
        }


def busy_banner(rows: Iterable[dict[str, Any]]) -> str:
    """A loud line when any measurement started on a machine that was already busy."""
    busy = [r for r in rows if r.get("busy")]
    if not busy:
        return "machine: idle before every measurement (load and CPU below the busy thresholds)"
    return (
        f"*** BUSY MACHINE: {len(busy)} measurement(s) started while other work used the machine "
        f"(1-min load > {BUSY_LOADAVG_PER_CORE}/core or CPU > {BUSY_CPU_PCT:.0f}% before the run); "
        "absolute figures are low, compare ratios from the same run ***"
    )


def spread(runs: list[dict[str, Any]], key: str) -> str | None:
    """'min-max' of a figure over runs (None when any run lacks it)."""
    vals = [r.get(key) for r in runs]
    if not vals or any(not isinstance(v, (int, float)) for v in vals):
        return None
    return f"{_fmt(min(vals))}-{_fmt(max(vals))}"  # type: ignore[type-var]
