"""The CLONE_REPOSITORY executor: the script that clones (or, on a retry, fetches and checks out) the
project's GitHub repository inside its sandbox.

The installation token reaches git only through the command's standard input: the script keeps it in
an environment variable of that one command and hands it to git with a credential helper given on the
command line as text (`$TENTER_GIT_TOKEN` is expanded by the helper's shell, not in argv). So it is never
in the argv the API server logs, in the saved remote URL (`.git/config` holds the plain HTTPS address),
or in git's messages; the task's output and error are redacted of it as well.

Safe to run twice: a folder that already holds a clone of that repository is fetched and checked out;
a clone goes into a temporary folder first and is moved into place only when complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from github import connect as github_connect
from github.client import REPO_RE, GitHubError
from projects.models import ProjectTask
from reconcile import manifests

PROJECT_DIR = f"{manifests.HOME_DIR}/next"
IMPORT_DIR = "import"  # under the project folder, as the reference does: import/<repository name>


class NotYet(Exception):
    """The executor cannot prepare its command now (a service it needs is unavailable): the task waits
    and is tried again later, without using an attempt. The message is shown as the reason."""


@dataclass(frozen=True)
class Script:
    """What an executor asks to run: `sh -c script` with `args` as positional parameters, `stdin` fed to
    it, `secrets` to redact from what is recorded, and `result` to add to the task's result."""

    script: str
    args: list[str]
    stdin: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    result: dict[str, Any] = field(default_factory=dict)


# $1 project folder, $2 clone URL (no credentials), $3 branch, $4 target folder (relative); stdin: token.
CLONE = r"""set -eu
IFS= read -r TENTER_GIT_TOKEN || true
export TENTER_GIT_TOKEN
base="$1"; url="$2"; branch="$3"; rel="$4"
if [ ! -d "$base" ]; then base="$HOME/next"; mkdir -p "$base"; fi
target="$base/$rel"
helper='!f() { test "$1" = get || exit 0; echo username=x-access-token;'
helper="$helper"' echo "password=$TENTER_GIT_TOKEN"; }; f'
g() {
  GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false SSH_ASKPASS=/bin/false \
    git -c credential.helper= -c "credential.helper=$helper" -c credential.interactive=never "$@"
}
if [ -d "$target/.git" ] && [ "$(git -C "$target" config --get remote.origin.url || true)" = "$url" ]; then
  g -C "$target" fetch --quiet --depth 1 origin "+refs/heads/$branch:refs/remotes/origin/$branch"
  git -C "$target" checkout --quiet -B "$branch" "refs/remotes/origin/$branch"
  echo "updated $rel to origin/$branch"
  exit 0
fi
if [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  echo "$rel already exists and is not a clone of $url: move it away, then retry" >&2
  exit 3
fi
mkdir -p "$(dirname "$target")"
tmp="$target.tenter-clone"
rm -rf "$tmp"
if ! g clone --quiet --depth 1 --single-branch --branch "$branch" -- "$url" "$tmp"; then
  rm -rf "$tmp"
  exit 4
fi
rm -rf "$target"
mv "$tmp" "$target"
echo "cloned into $rel"
"""


def target_folder(full_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", full_name.split("/", 1)[-1]).lstrip(".-") or "repository"
    return f"{IMPORT_DIR}/{name}"


def clone_script(task: ProjectTask) -> Script:
    payload = task.payload if isinstance(task.payload, dict) else {}
    installation_id, full_name, branch = (
        payload.get("installation_id"),
        payload.get("repository"),
        payload.get("branch"),
    )
    if (
        not isinstance(installation_id, int)
        or not isinstance(full_name, str)
        or not REPO_RE.fullmatch(full_name)
    ):
        raise ValueError("the task does not name a repository and an installation")
    if not isinstance(branch, str) or not branch or branch.startswith("-"):
        raise ValueError("the task does not name a branch")
    try:
        app = github_connect.app()
        # A retry gets a new token: the one cached may be why the last attempt failed.
        token = app.installation_token(installation_id, fresh=task.attempts > 0)
    except GitHubError as exc:
        if exc.code in ("github_not_found", "github_denied", "github_not_configured"):
            raise ValueError(
                f"GitHub gives no access to the installation any more ({exc.message}) "
                "Install the GitHub App again"
            ) from None
        raise NotYet(f"Waiting for GitHub: {exc.message}") from None
    rel = target_folder(full_name)
    return Script(
        script=CLONE,
        args=[PROJECT_DIR, app.clone_url(full_name), branch, rel],
        stdin=token + "\n",
        secrets=(token,),
        result={"repository": full_name, "branch": branch, "path": rel},
    )
