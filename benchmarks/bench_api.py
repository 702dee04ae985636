"""API and dashboard under load (issue 7): gunicorn as in docker-compose.yml, driven by wrk.

Run: python benchmarks/bench_api.py [--quick] [--duration 5] [--repeats 3] [--clients 10,100]

Setup (every run, in the bench database only): the tables are emptied (TRUNCATE of the user table,
CASCADE), then 500 users with 20 projects each (10,000 projects, each with a RUNNING sandbox, its three
system environment rows and one event) are bulk-inserted, each user with a personal API token and a kubeconfig
row (tests/factories.py KUBECONFIG_TEMPLATE, check OK), plus one "big" user with 200 projects for the
query-count comparison. 50 users get a dashboard session (force_login; the cookie is reused).

Server: `gunicorn config.wsgi:application --workers 2` (sync, docker-compose's WEB_CONCURRENCY) on
127.0.0.1, DEBUG=false, a fresh SECRET_KEY and Fernet FIELD_ENCRYPTION_KEYS, ALLOWED_HOSTS=127.0.0.1,
access log on (to /dev/null).
Load: wrk (Debian package `wrk`) with benchmarks/wrk_requests.lua, 2 threads, closed loop, C connections;
each request picks a random user (token or session) and a random project of that user.

Endpoints: POST /api/v1/projects (unique names; kicks go to the bench queue, no worker consumes them),
GET /api/v1/projects (page 1), GET /api/v1/projects/{id}, the dashboard status poll
GET /projects/status?ids=<the user's 20 ids>, and the projects page GET /.
Figures per endpoint and client count: req/s and p50/p95/p99 latency (wrk), median of the repeats.
SQL queries per request are counted in-process (django.test.Client + CaptureQueriesContext) for a user
with 20 projects and one with 200.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    bench_env,
    free_port,
    median_runs,
    stop,
    table,
    wait_port,
    write_result,
)

GOALS = {
    "post_project": "p99 < 50 ms and >= 300 req/s at 100 clients",
    "list_projects": "p99 < 50 ms",
    "status_poll": "p99 < 50 ms",
    "get_project": "-",
    "projects_page": "p95 < 100 ms",
}


def web_env() -> dict[str, str]:
    """Production-like settings shared by the bench process and gunicorn (same keys: sessions, crypto)."""
    if not os.environ.get("BENCH_WEB_KEYS"):
        import secrets

        from cryptography.fernet import Fernet

        os.environ["BENCH_WEB_KEYS"] = "1"
        os.environ["SECRET_KEY"] = "bench-" + secrets.token_urlsafe(40)
        os.environ["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    env = bench_env()
    env.update(DEBUG="false", ALLOWED_HOSTS="127.0.0.1,localhost,testserver", CONN_MAX_AGE="60")
    # The throttles still count every request (their cost is measured) but never refuse one here.
    env.update(API_THROTTLE_READS="100000000/minute", API_THROTTLE_WRITES="100000000/minute")
    return env


def setup() -> None:
    os.environ.update(web_env())
    import django

    django.setup()


# --- data --------------------------------------------------------------------------------------------


def seed(users: int = 500, per_user: int = 20, big: int = 200, sessions: int = 50) -> dict[str, Any]:
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from projects.models import Environment, Project
    from sandboxes.models import ResourceEvent, Sandbox
    from tests.factories import KUBECONFIG_TEMPLATE
    from userconfig.models import ApiToken, CheckStatus, ConfigKey, User, UserConfig, hash_token
    from userconfig.services import new_token_secret

    t0 = time.perf_counter()
    with connection.cursor() as c:
        c.execute(f'TRUNCATE TABLE "{User._meta.db_table}", "django_session" CASCADE')
    password = make_password("bench-password")
    now = timezone.now()
    with transaction.atomic():
        objs = [User(username=f"api{i}", password=password) for i in range(users)]
        objs.append(User(username="api-big", password=password))
        all_users = User.objects.bulk_create(objs)
        tokens = {u.pk: new_token_secret() for u in all_users}
        ApiToken.objects.bulk_create(
            ApiToken(user=u, name="bench", prefix=tokens[u.pk][:8], token_hash=hash_token(tokens[u.pk]))
            for u in all_users
        )
        UserConfig.objects.bulk_create(
            UserConfig(
                user=u,
                key=ConfigKey.KUBECONFIG,
                value=KUBECONFIG_TEMPLATE.format(namespace=f"ns-{i}"),
                category="kc",
                is_secret=True,
                namespace=f"ns-{i}",
                server="https://k8s.example.test:6443",
                server_host="k8s.example.test",
                check_status=CheckStatus.OK,
                checked_at=now,
            )
            for i, u in enumerate(all_users)
        )
        projects = []
        for u in all_users:
            count = big if u.username == "api-big" else per_user
            projects += [Project(owner=u, name=f"Project {j}", status="RUNNING") for j in range(count)]
        projects = Project.objects.bulk_create(projects, batch_size=2000)
        sandboxes = []
        for i, p in enumerate(projects):
            name = f"project-{j_suffix(i)}"
            sandboxes.append(
                Sandbox(
                    project=p,
                    name=name,
                    k8s_namespace=f"ns-{p.owner_id}",
                    k8s_name=name,
                    status="RUNNING",
                    image="ghcr.io/example/runtime:latest",
                    cpu_request="20m",
                    cpu_limit="2000m",
                    memory_request="25Mi",
                    memory_limit="4096Mi",
                    storage_size="10Gi",
                    ingress_domain="example.test",
                    public_url=f"https://{name}-app.example.test",
                    ttyd_url=f"https://{name}-ttyd.example.test",
                    filebrowser_url=f"https://{name}-filebrowser.example.test",
                )
            )
        sandboxes = Sandbox.objects.bulk_create(sandboxes, batch_size=2000)
        Environment.objects.bulk_create(
            (
                Environment(
                    project=p, key=k, value=uuid.uuid4().hex, category=cat, is_secret=s, is_system=True
                )
                for p in projects
                for k, cat, s in (
                    ("TTYD_ACCESS_TOKEN", "ttyd", True),
                    ("FILE_BROWSER_USERNAME", "file_browser", False),
                    ("FILE_BROWSER_PASSWORD", "file_browser", True),
                )
            ),
            batch_size=5000,
        )
        ResourceEvent.objects.bulk_create(
            (
                ResourceEvent(
                    project_id=s.project_id,
                    project_name="Project",
                    resource_kind="sandbox",
                    resource_id=s.pk,
                    resource_name=s.name,
                    from_status="STARTING",
                    to_status="RUNNING",
                    reason="ready",
                    actor="reconciler",
                )
                for s in sandboxes
            ),
            batch_size=5000,
        )
    by_user: dict[int, list[str]] = {}
    for pid, owner in Project.objects.values_list("id", "owner_id"):
        by_user.setdefault(owner, []).append(str(pid))
    normal = [u for u in all_users if u.username != "api-big"]
    big_user = next(u for u in all_users if u.username == "api-big")
    cookies = {}
    for u in normal[:sessions]:
        c = Client()
        c.force_login(u)
        cookies[u.pk] = c.cookies["sessionid"].value
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "users": [u.pk for u in normal],
        "big_user": big_user.pk,
        "tokens": tokens,
        "projects": by_user,
        "cookies": cookies,
        "counts": {"users": len(all_users), "projects": len(projects)},
    }


def j_suffix(i: int) -> str:
    """8 lowercase letters from a number (sandbox names must be unique per namespace)."""
    s = ""
    for _ in range(8):
        i, r = divmod(i, 26)
        s += chr(97 + r)
    return s


# --- server and load ---------------------------------------------------------------------------------


GUNICORN_WORKERS = os.environ.get("BENCH_GUNICORN_WORKERS", "2")
GUNICORN_THREADS = os.environ.get("BENCH_GUNICORN_THREADS", "1")
GUNICORN = f"{GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads"


class Gunicorn:
    def __init__(
        self,
        workers: int = int(GUNICORN_WORKERS),
        threads: int = int(GUNICORN_THREADS),
    ):
        self.port = free_port()
        self.log = open(tempfile.mktemp(prefix="bench-gunicorn-", suffix=".log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--access-logfile",
                "/dev/null",
            ],
            cwd=ROOT,
            env=web_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_port("127.0.0.1", self.port, 30)
        self.url = f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def close(self) -> None:
        stop(self.proc)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def request_lines(name: str, data: dict[str, Any]) -> list[str]:
    tokens, projects, cookies = data["tokens"], data["projects"], data["cookies"]
    users = data["users"]
    lines = []
    if name == "post_project":
        for u in users:
            lines.append(
                f"POST|/api/v1/projects|Authorization: Token {tokens[u]};;Content-Type: application/json|"
                '{"name": "Load {n}"}'
            )
    elif name == "list_projects":
        lines = [f"GET|/api/v1/projects|Authorization: Token {tokens[u]}|" for u in users]
    elif name == "get_project":
        for u in users:
            lines += [f"GET|/api/v1/projects/{p}|Authorization: Token {tokens[u]}|" for p in projects[u][:20]]
    elif name == "status_poll":
        for u, c in cookies.items():
            ids = ",".join(projects[u][:20])
            lines.append(f"GET|/projects/status?ids={ids}|Cookie: sessionid={c}|")
    elif name == "projects_page":
        lines = [f"GET|/|Cookie: sessionid={c}|" for c in cookies.values()]
    else:
        raise ValueError(name)
    return lines


def wrk(url: str, lines: list[str], clients: int, duration: float, threads: int = 2) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        cmd = [
            "wrk",
            f"-t{min(threads, clients)}",
            f"-c{clients}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "benchmarks" / "wrk_requests.lua"),
            url,
            "--",
            path,
            uuid.uuid4().hex[:6],
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    line = next(x for x in out.splitlines() if x.startswith("BENCHJSON "))
    r = json.loads(line[len("BENCHJSON ") :])
    secs = r["duration_us"] / 1e6
    return {
        "requests": r["requests"],
        "rps": round(r["requests"] / secs, 1),
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p95_ms": round(r["p95_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "max_ms": round(r["max_us"] / 1000, 1),
        "errors": r["status_errors"]
        + r["connect_errors"]
        + r["read_errors"]
        + r["write_errors"]
        + r["timeouts"],
    }


# --- SQL queries per request (in process) -----------------------------------------------------------


def query_counts(data: dict[str, Any]) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from userconfig.models import User

    small = data["users"][0]
    big = data["big_user"]
    rows = []
    for label, uid in (("20 projects", small), ("200 projects", big)):
        user = User.objects.get(pk=uid)
        token = data["tokens"][uid]
        ids = data["projects"][uid]
        api = Client(HTTP_AUTHORIZATION=f"Token {token}")
        web = Client()
        web.force_login(user)
        calls = {
            "post_project": lambda api=api: api.post(
                "/api/v1/projects", {"name": f"Count {uuid.uuid4().hex[:8]}"}, content_type="application/json"
            ),
            "list_projects": lambda api=api: api.get("/api/v1/projects"),
            "get_project": lambda api=api, ids=ids: api.get(f"/api/v1/projects/{ids[0]}"),
            "status_poll": lambda web=web, ids=ids: web.get("/projects/status", {"ids": ",".join(ids[:50])}),
            "projects_page": lambda web=web: web.get("/"),
        }
        row: dict[str, Any] = {"data": label}
        for name, call in calls.items():
            call()  # warm-up (first-use queries such as content types)
            with CaptureQueriesContext(connection) as ctx:
                resp = call()
            row[name] = len(ctx.captured_queries)
            if resp.status_code >= 400:
                row[name] = f"{len(ctx.captured_queries)} (HTTP {resp.status_code})"
        rows.append(row)
    return rows


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=float, default=None, help="seconds per wrk run (5; quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (3; quick 1)")
    ap.add_argument("--clients", default="10,100")
    ap.add_argument("--endpoints", default="list_projects,get_project,status_poll,projects_page,post_project")
    args = ap.parse_args(argv)
    duration = args.duration or (2 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 3)
    clients = [int(x) for x in args.clients.split(",")]
    endpoints = args.endpoints.split(",")
    if not shutil.which("wrk"):
        raise SystemExit("bench_api needs wrk: apt-get install -y wrk")
    setup()
    t_all = time.perf_counter()
    data = seed()
    print(f"seeded {data['counts']} in {data['seconds']} s", file=sys.stderr, flush=True)
    queries = query_counts(data)
    server = Gunicorn()
    rows = []
    raw = []
    try:
        for name in endpoints:  # POST last: it grows the data
            lines = request_lines(name, data)
            wrk(server.url, lines, 10, 1)  # warm-up: every gunicorn worker imports and connects
            for c in clients:
                runs = []
                for r in range(repeats):
                    res = wrk(server.url, lines, c, duration)
                    print(f"  [{name} c={c} run {r + 1}] {res}", file=sys.stderr, flush=True)
                    runs.append(res)
                    raw.append({"endpoint": name, "clients": c, **res})
                rows.append({"endpoint": name, "clients": c, **median_runs(runs), "goal": GOALS[name]})
        rss = {pid: _rss(pid) for pid in server.worker_pids()}
    finally:
        server.close()
        flush_broker()
    elapsed = time.perf_counter() - t_all
    print(
        table(
            f"API under load: gunicorn {GUNICORN}, wrk 2 threads, {duration:g} s per run (median of runs)",
            rows,
            ["endpoint", "clients", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "runs", "goal"],
        )
    )
    print(
        table(
            "SQL queries per request (in-process Client + CaptureQueriesContext)",
            queries,
            ["data", *endpoints],
        )
    )
    out = write_result(
        "api",
        {
            "quick": args.quick,
            "repeats": repeats,
            "duration_s": duration,
            "elapsed_s": round(elapsed, 1),
            "seed": {k: data[k] for k in ("counts", "seconds")},
            "results": rows,
            "queries_per_request": queries,
            "gunicorn_worker_rss_mb": rss,
            "runs": raw,
            "notes": __doc__,
        },
    )
    print(f"wrote {out.relative_to(ROOT)} in {elapsed:.0f} s")
    return {"rows": rows}


def _rss(pid: int) -> float | None:
    from common import rss_mb

    return rss_mb(pid)


if __name__ == "__main__":
    random.seed(1)
    main()
