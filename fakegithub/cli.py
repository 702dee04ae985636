"""Command line: `python -m fakegithub` / `python manage.py fakegithub`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from fakegithub.server import FakeGitHub, FakeGitHubServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--state-dir", required=True, help="state, the App's key and the bare repositories")
    parser.add_argument(
        "--webhook-url", default="", help="where to deliver webhooks (Tenter's /github/webhook)"
    )
    parser.add_argument(
        "--callback-url",
        default="",
        help="the App's setup URL (Tenter's /github/callback); default: the webhook URL's origin + that path",
    )
    parser.add_argument("--app-id", type=int, default=1001)
    parser.add_argument("--app-slug", default="tenter-dev")
    parser.add_argument("--user", default="octocat", help="who is signed in on the fake's web pages")
    parser.add_argument(
        "--demo",
        default="",
        help="ACCOUNT/REPO: create that repository (with a few files) and an installation holding it",
    )
    parser.add_argument("--settings-out", default="", help="write Tenter's GITHUB_* settings here (JSON)")
    parser.add_argument("--verbose", action="store_true")


def _callback(webhook_url: str) -> str:
    if not webhook_url:
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(webhook_url)
    return f"{parts.scheme}://{parts.netloc}/github/callback"


DEMO_FILES = {
    "README.md": "# Demo repository\n\nImported by Tenter from the fake GitHub.\n",
    "app.py": 'print("hello from the demo repository")\n',
    "docs/notes.md": "Files in sub-folders come along too.\n",
}


def run(opts: Any) -> int:
    logging.basicConfig(level=logging.INFO if opts.verbose else logging.WARNING, format="%(message)s")
    fake = FakeGitHub(
        Path(opts.state_dir),
        app_id=opts.app_id,
        slug=opts.app_slug,
        webhook_url=opts.webhook_url,
        callback_url=opts.callback_url or _callback(opts.webhook_url),
        user=opts.user,
    )
    server = FakeGitHubServer(fake, port=opts.port, verbose=opts.verbose)
    demo_installation = None
    if opts.demo:
        account, _, name = opts.demo.partition("/")
        if opts.demo not in fake.state["repos"]:
            fake.create_repo(account, name, files=DEMO_FILES, description="Tenter's demo repository")
        found = [i for i in fake.state["installations"].values() if i["account"] == account]
        demo_installation = (
            found[0]["id"] if found else fake.create_installation(account, repositories=[opts.demo])["id"]
        )
    if opts.settings_out:
        out = Path(opts.settings_out)
        out.write_text(
            json.dumps({**fake.tenter_settings(), "demo_installation_id": demo_installation}, indent=1)
        )
        out.chmod(0o600)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"fakegithub ready on {server.url} (state in {opts.state_dir})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakegithub", description="A local GitHub simulator for Tenter.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
