"""`make run` on a machine with no PostgreSQL and no Redis: scripts/devenv.py starts embedded ones.

The app runs in a network namespace of its own (`unshare -n`, loopback up), where nothing answers on
5432 or 6379, exactly as on a newcomer's machine; scripts/smoke.py then checks it from inside that
namespace (`nsenter`) as the demo user would: /readyz reports database and broker ok, and a project
with a database reaches RUNNING with DATABASE_URL in its sandbox's Secret.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS = ("unshare", "nsenter", "ip")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in NEEDS),
    reason=f"needs root and {', '.join(NEEDS)} to make a network namespace (CI runs as root)",
)


def test_make_run_with_no_postgres_and_no_redis_uses_embedded_ones():
    state = Path(tempfile.mkdtemp(prefix="tenter-ns-"))  # short: unix socket paths are limited
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env["TENTER_STATE_DIR"] = str(state)
    log = (state / "devenv.log").open("w")
    app = subprocess.Popen(
        [
            "unshare",
            "-n",
            "--",
            "sh",
            "-c",
            f'ip link set lo up && exec "{sys.executable}" scripts/devenv.py run',
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # nsenter only once unshare has made the namespace, or the smoke test would check this host
        for _ in range(100):
            if os.readlink(f"/proc/{app.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("unshare did not make a network namespace")
        smoke = subprocess.run(
            ["nsenter", f"--net=/proc/{app.pid}/ns/net", "--", sys.executable, "scripts/smoke.py"],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            timeout=400,
        )
        output = (state / "devenv.log").read_text()
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr + output[-3000:]
        assert "ready: {'database': 'ok', 'broker': 'ok'}" in smoke.stdout
        assert "the sandbox's Secret carries DATABASE_URL" in smoke.stdout
        assert f"embedded PostgreSQL on socket {state}" in output
        assert "embedded Redis on 127.0.0.1" in output

        app.send_signal(signal.SIGINT)  # Ctrl-C stops web, worker, beat, kubesim and both servers
        assert app.wait(60) == 130
        assert not (state / "pgdata" / "postmaster.pid").exists()
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)
