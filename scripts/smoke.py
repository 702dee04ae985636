"""Check a running `make run` end to end, as its demo user would: the app is ready, a new project with a
database reaches RUNNING, and the sandbox's environment Secret in the cluster (kubesim) carries the
database's DATABASE_URL. The project is deleted again at the end.

    python scripts/smoke.py                 # against http://127.0.0.1:8000 and the state in .state/
    python scripts/smoke.py --timeout 300

It reads the demo's API token and kubesim's kubeconfig from the state folder `make run` writes
(TENTER_STATE_DIR, default .state/). Standard library and PyYAML only. Exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


class Http:
    def __init__(self, base: str, headers: dict[str, str], context: ssl.SSLContext | None = None) -> None:
        self.base, self.headers, self.context = base.rstrip("/"), headers, context

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw else None)


def kubesim_client(kubeconfig: Path) -> Http:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    return Http(cluster["server"], {"Authorization": f"Bearer {user['token']}"}, context)


def wait_for(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            done, last = probe()
        except OSError as exc:  # not listening yet
            done, last = False, exc.__class__.__name__
        if done:
            return last
        time.sleep(0.25)
    raise SystemExit(f"[smoke] FAILED: {what} within {timeout:.0f} s (last seen: {last})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--state", type=Path, default=Path(os.environ.get("TENTER_STATE_DIR") or ROOT / ".state"))
    ap.add_argument("--timeout", type=float, default=180, help="seconds for each wait")
    opts = ap.parse_args()

    token_file, kubeconfig = opts.state / "demo-token", opts.state / "kubesim" / "kubeconfig"
    wait_for("make run wrote the demo token", opts.timeout, lambda: (token_file.exists(), str(token_file)))
    tenter = Http(opts.url, {"Authorization": f"Token {token_file.read_text().strip()}"})

    def ready() -> tuple[bool, Any]:
        status, body = tenter.call("GET", "/readyz")
        return status == 200, body

    checks = wait_for("/readyz answered 200", opts.timeout, ready)["checks"]
    say(f"ready: {checks}")

    status, project = tenter.call("POST", "/api/v1/projects", {"name": f"smoke-{uuid.uuid4().hex[:6]}"})
    if status != 202:
        raise SystemExit(f"[smoke] FAILED: create project answered {status}: {project}")
    pid = project["id"]
    status, database = tenter.call("POST", f"/api/v1/projects/{pid}/databases", {})
    if status != 202:
        raise SystemExit(f"[smoke] FAILED: add database answered {status}: {database}")
    say(f"project {project['name']} created with a database")

    def running() -> tuple[bool, Any]:
        _, detail = tenter.call("GET", f"/api/v1/projects/{pid}")
        states = [r["status"] for r in (*detail["sandboxes"], *detail["databases"])]
        return detail["status"] == "RUNNING" and set(states) == {"RUNNING"}, detail

    detail = wait_for("the project and its database reached RUNNING", opts.timeout, running)
    sandbox = detail["sandboxes"][0]
    say(f"project RUNNING: sandbox {sandbox['k8s_name']} and database {detail['databases'][0]['name']}")

    cluster = kubesim_client(kubeconfig)

    def secret_has_database_url() -> tuple[bool, Any]:
        path = f"/api/v1/namespaces/{sandbox['k8s_namespace']}/secrets/{sandbox['k8s_name']}-env"
        status, secret = cluster.call("GET", path)
        keys = sorted((secret or {}).get("data") or {}) if status == 200 else status
        return isinstance(keys, list) and "DATABASE_URL" in keys, keys

    wait_for("DATABASE_URL appeared in the sandbox's Secret", opts.timeout, secret_has_database_url)
    say("the sandbox's Secret carries DATABASE_URL")

    status, _ = tenter.call("DELETE", f"/api/v1/projects/{pid}")
    if status != 202:
        raise SystemExit(f"[smoke] FAILED: delete answered {status}")
    wait_for(
        "the project was deleted",
        opts.timeout,
        lambda: (tenter.call("GET", f"/api/v1/projects/{pid}")[0] == 404, None),
    )
    say("project deleted; OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
