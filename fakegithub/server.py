"""The fake GitHub: state, HTTP routes and git's smart HTTP over local bare repositories.

One server answers everything on one loopback port, as GitHub Enterprise Server does:

- the REST API under `/api/v3` (the App's JWT, installation tokens, OAuth user tokens);
- the web side: the App's install page, OAuth authorize and token exchange;
- git over HTTP (`/{owner}/{repo}.git/...`) through git's own `git http-backend`, for clients that
  present an installation token (`Basic x-access-token:<token>`) with access to the repository;
- a control API under `/_fakegithub/` for tests and `make run` (repositories, installations, token
  revocation, webhook delivery). GitHub has no such path, so Tenter never calls it.

State lives in memory and in `state.json` in the state folder (so a restart keeps it); bare repositories
under `git/` there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger("fakegithub")

API = "/api/v3"
TOKEN_TTL = timedelta(hours=1)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _git(*args: str, cwd: Path | None = None) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "fakegithub",
        "GIT_AUTHOR_EMAIL": "fake@example.invalid",
        "GIT_COMMITTER_NAME": "fakegithub",
        "GIT_COMMITTER_EMAIL": "fake@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd or tempfile.gettempdir()),
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


class FakeGitHub:
    """The simulator's state and behaviour (thread-safe); `FakeGitHubServer` puts HTTP in front."""

    def __init__(
        self,
        state_dir: Path,
        *,
        app_id: int = 1001,
        slug: str = "tenter-dev",
        webhook_url: str = "",
        callback_url: str = "",
        user: str = "octocat",
    ) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "git").mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.webhook_url = webhook_url
        self.callback_url = callback_url
        self.signed_in = user  # who "is signed in" on the fake's web pages
        self.base_url = ""  # set by the server once it listens
        self.counters: dict[str, int] = {}
        self.git_denied = False  # control: refuse every token at the git endpoint (a revoked token)
        self.state: dict[str, Any] = self._load()
        app = self.state.setdefault("app", {})
        app.setdefault("id", app_id)
        app.setdefault("slug", slug)
        app.setdefault("webhook_secret", secrets.token_hex(20))
        app.setdefault("client_id", "Iv1." + secrets.token_hex(8))
        app.setdefault("client_secret", secrets.token_hex(20))
        key_path = self.dir / "app-private-key.pem"
        if not key_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)
        self.private_key_pem = key_path.read_text()
        private = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self.public_key = private.public_key()
        for name in ("repos", "installations", "users", "tokens", "user_tokens", "codes"):
            self.state.setdefault(name, {})
        self.state.setdefault("next_id", 1000)
        self.state.setdefault("deliveries", [])
        self.ensure_user(user)
        self._save()

    # --- persistence --------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        path = self.dir / "state.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        return {}

    def _save(self) -> None:
        path = self.dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(path)

    def _id(self) -> int:
        self.state["next_id"] += 1
        return int(self.state["next_id"])

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    @property
    def app(self) -> dict[str, Any]:
        return dict(self.state["app"])

    def tenter_settings(self, base_url: str | None = None) -> dict[str, str]:
        """The GITHUB_* settings that point Tenter at this fake."""
        base = base_url or self.base_url
        app = self.state["app"]
        return {
            "GITHUB_APP_ID": str(app["id"]),
            "GITHUB_APP_SLUG": app["slug"],
            "GITHUB_APP_PRIVATE_KEY": self.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": app["webhook_secret"],
            "GITHUB_CLIENT_ID": app["client_id"],
            "GITHUB_CLIENT_SECRET": app["client_secret"],
            "GITHUB_API_URL": base + API,
            "GITHUB_WEB_URL": base,
        }

    # --- users, repositories -----------------------------------------------------------------------
    def ensure_user(self, login: str, type_: str = "User") -> dict[str, Any]:
        with self.lock:
            users = self.state["users"]
            if login not in users:
                users[login] = {"id": self._id(), "login": login, "type": type_, "members": []}
                self._save()
            return dict(users[login])

    def _owner(self, login: str) -> dict[str, Any]:
        user = self.state["users"][login]
        return {
            "login": login,
            "id": user["id"],
            "type": user["type"],
            "avatar_url": f"{self.base_url}/avatars/{login}.png",
        }

    def repo_path(self, full_name: str) -> Path:
        owner, name = full_name.split("/", 1)
        return self.dir / "git" / owner / f"{name}.git"

    def create_repo(
        self,
        owner: str,
        name: str,
        *,
        files: dict[str, str] | None = None,
        default_branch: str = "main",
        branches: list[str] | None = None,
        private: bool = True,
        description: str = "",
        owner_type: str = "User",
    ) -> dict[str, Any]:
        for part in (owner, name, default_branch, *(branches or [])):
            if not NAME_RE.fullmatch(part) or os.pardir in part:  # no "a..b": git refs refuse it too
                raise HttpError(422, f"invalid name {part!r}")
        full = f"{owner}/{name}"
        with self.lock:
            self.ensure_user(owner, owner_type)
            if full in self.state["repos"]:
                raise HttpError(422, "name already exists on this account")
            bare = self.repo_path(full)
            bare.parent.mkdir(parents=True, exist_ok=True)
            _git("init", "--bare", "--initial-branch", default_branch, str(bare))
            work = Path(tempfile.mkdtemp(prefix="fakegithub-"))
            try:
                _git("init", "--initial-branch", default_branch, ".", cwd=work)
                for path, content in (files or {"README.md": f"# {name}\n"}).items():
                    target = work / path
                    if not target.resolve().is_relative_to(work.resolve()):
                        raise HttpError(422, f"invalid path {path!r}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content)
                _git("add", "-A", cwd=work)
                _git("commit", "-q", "-m", "Initial commit", cwd=work)
                _git("push", "-q", str(bare), f"{default_branch}:{default_branch}", cwd=work)
                for branch in branches or []:
                    _git("push", "-q", str(bare), f"{default_branch}:refs/heads/{branch}", cwd=work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            self.state["repos"][full] = {
                "id": self._id(),
                "private": private,
                "default_branch": default_branch,
                "description": description,
            }
            self._save()
            return self.repo_json(full)

    def delete_branch(self, full: str, branch: str) -> None:
        with self.lock:
            if full not in self.state["repos"]:
                raise HttpError(404, "Not Found")
            try:
                _git("--git-dir", str(self.repo_path(full)), "update-ref", "-d", f"refs/heads/{branch}")
            except subprocess.CalledProcessError:
                raise HttpError(404, "Branch not found") from None

    def branches(self, full: str) -> list[str]:
        out = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repo_path(full)),
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads/",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return sorted(line for line in out.splitlines() if line)

    def repo_json(self, full: str) -> dict[str, Any]:
        repo = self.state["repos"][full]
        owner, name = full.split("/", 1)
        return {
            "id": repo["id"],
            "node_id": f"R_{repo['id']}",
            "name": name,
            "full_name": full,
            "private": repo["private"],
            "owner": self._owner(owner),
            "html_url": f"{self.base_url}/{full}",
            "clone_url": f"{self.base_url}/{full}.git",
            "description": repo["description"] or None,
            "default_branch": repo["default_branch"],
        }

    # --- installations -------------------------------------------------------------------------------
    def create_installation(
        self,
        account: str,
        *,
        account_type: str = "User",
        repositories: list[str] | None = None,
        members: list[str] | None = None,
        sender: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            user = self.ensure_user(account, account_type)
            if members:
                self.state["users"][account]["members"] = sorted(set(user["members"]) | set(members))
            inst_id = self._id()
            self.state["installations"][str(inst_id)] = {
                "id": inst_id,
                "account": account,
                "repository_selection": "all" if repositories is None else "selected",
                "repositories": sorted(repositories or []),
                "suspended_at": None,
                "created_at": _iso(_now()),
            }
            self._save()
            body = self.installation_json(inst_id)
        self.deliver(
            "installation",
            {
                "action": "created",
                "installation": body,
                "repositories": [self._repo_brief(r) for r in self.installation_repos(inst_id)],
                "sender": self._owner(sender or account),
            },
        )
        return body

    def installation(self, inst_id: int | str) -> dict[str, Any]:
        inst = self.state["installations"].get(str(inst_id))
        if inst is None:
            raise HttpError(404, "Not Found")
        return dict(inst)

    def installation_json(self, inst_id: int | str) -> dict[str, Any]:
        inst = self.installation(inst_id)
        return {
            "id": inst["id"],
            "app_id": self.state["app"]["id"],
            "app_slug": self.state["app"]["slug"],
            "target_type": self.state["users"][inst["account"]]["type"],
            "account": self._owner(inst["account"]),
            "repository_selection": inst["repository_selection"],
            "permissions": {"contents": "read", "metadata": "read"},
            "events": [],
            "created_at": inst["created_at"],
            "suspended_at": inst["suspended_at"],
        }

    def installation_repos(self, inst_id: int | str) -> list[str]:
        inst = self.installation(inst_id)
        if inst["repository_selection"] == "all":
            return sorted(r for r in self.state["repos"] if r.split("/")[0] == inst["account"])
        return [r for r in inst["repositories"] if r in self.state["repos"]]

    def _repo_brief(self, full: str) -> dict[str, Any]:
        repo = self.state["repos"][full]
        return {
            "id": repo["id"],
            "name": full.split("/", 1)[1],
            "full_name": full,
            "private": repo["private"],
        }

    def change_repositories(self, inst_id: int, add: list[str], remove: list[str]) -> dict[str, Any]:
        with self.lock:
            inst = self.state["installations"].get(str(inst_id))
            if inst is None:
                raise HttpError(404, "Not Found")
            current = set(self.installation_repos(inst_id))
            inst["repository_selection"] = "selected"
            inst["repositories"] = sorted((current | set(add)) - set(remove))
            self._save()
            body = self.installation_json(inst_id)
        self.deliver(
            "installation_repositories",
            {
                "action": "added" if add else "removed",
                "installation": body,
                "repository_selection": "selected",
                "repositories_added": [self._repo_brief(r) for r in add if r in self.state["repos"]],
                "repositories_removed": [self._repo_brief(r) for r in remove if r in self.state["repos"]],
                "sender": self._owner(inst["account"]),
            },
        )
        return body

    def set_suspended(self, inst_id: int, suspended: bool) -> dict[str, Any]:
        with self.lock:
            inst = self.state["installations"].get(str(inst_id))
            if inst is None:
                raise HttpError(404, "Not Found")
            inst["suspended_at"] = _iso(_now()) if suspended else None
            self._save()
            body = self.installation_json(inst_id)
        self.deliver(
            "installation",
            {
                "action": "suspend" if suspended else "unsuspend",
                "installation": body,
                "sender": self._owner(inst["account"]),
            },
        )
        return body

    def delete_installation(self, inst_id: int) -> dict[str, Any]:
        with self.lock:
            body = self.installation_json(inst_id)
            del self.state["installations"][str(inst_id)]
            for token in self.state["tokens"].values():
                if token["installation_id"] == inst_id:
                    token["revoked"] = True
            self._save()
        return self.deliver(
            "installation",
            {"action": "deleted", "installation": body, "sender": body["account"]},
        )

    # --- tokens ------------------------------------------------------------------------------------
    def verify_jwt(self, authorization: str) -> None:
        """The App's JWT (RS256, signed with the App's private key, iss = the App id, short-lived)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            self.count("jwt_rejected")
            raise HttpError(401, "A JSON web token could not be decoded")
        head_b64, body_b64, sig_b64 = token.split(".")
        try:
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(body_b64))
            self.public_key.verify(
                _b64url_decode(sig_b64),
                f"{head_b64}.{body_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            self.count("jwt_rejected")
            raise HttpError(401, "A JSON web token could not be decoded") from None
        now = time.time()
        if (
            header.get("alg") != "RS256"
            or str(claims.get("iss")) != str(self.state["app"]["id"])
            or not isinstance(claims.get("exp"), int | float)
            or not isinstance(claims.get("iat"), int | float)
            or claims["exp"] <= now
            or claims["iat"] > now + 60
            or claims["exp"] - claims["iat"] > 600
        ):
            self.count("jwt_rejected")
            raise HttpError(401, "'Expiration time' claim ('exp') is too far in the future or invalid")
        self.count("jwt_accepted")

    def issue_token(self, inst_id: int) -> dict[str, Any]:
        with self.lock:
            inst = self.installation(inst_id)
            if inst["suspended_at"]:
                raise HttpError(403, "This installation has been suspended")
            token = "ghs_" + secrets.token_urlsafe(27)
            expires = _now() + TOKEN_TTL
            self.state["tokens"][token] = {
                "installation_id": inst_id,
                "expires_at": _iso(expires),
                "revoked": False,
            }
            self._save()
            self.count("tokens_issued")
            return {
                "token": token,
                "expires_at": _iso(expires),
                "permissions": {"contents": "read", "metadata": "read"},
                "repository_selection": inst["repository_selection"],
            }

    def revoke_tokens(self, inst_id: int | None = None) -> int:
        with self.lock:
            n = 0
            for token in self.state["tokens"].values():
                if inst_id is None or token["installation_id"] == inst_id:
                    n += not token["revoked"]
                    token["revoked"] = True
            self._save()
            return n

    def installation_for_token(self, token: str) -> int:
        entry = self.state["tokens"].get(token)
        if (
            entry is None
            or entry["revoked"]
            or entry["expires_at"] <= _iso(_now())
            or str(entry["installation_id"]) not in self.state["installations"]
        ):
            raise HttpError(401, "Bad credentials")
        return int(entry["installation_id"])

    def user_for_token(self, token: str) -> str:
        login = self.state["user_tokens"].get(token)
        if login is None:
            raise HttpError(401, "Bad credentials")
        return str(login)

    # --- OAuth ------------------------------------------------------------------------------------
    def new_code(self, login: str) -> str:
        with self.lock:
            code = secrets.token_hex(10)
            self.state["codes"][code] = {"login": login, "expires_at": _iso(_now() + timedelta(minutes=10))}
            self._save()
            return code

    def exchange_code(self, client_id: str, client_secret: str, code: str) -> dict[str, Any]:
        app = self.state["app"]
        if not (
            hmac.compare_digest(client_id, app["client_id"])
            and hmac.compare_digest(client_secret, app["client_secret"])
        ):
            return {"error": "incorrect_client_credentials"}
        with self.lock:
            entry = self.state["codes"].pop(code, None)
            if entry is None or entry["expires_at"] <= _iso(_now()):
                self._save()
                return {"error": "bad_verification_code"}
            token = "ghu_" + secrets.token_urlsafe(27)
            self.state["user_tokens"][token] = entry["login"]
            self._save()
        return {"access_token": token, "token_type": "bearer", "scope": "", "expires_in": 28800}

    def user_installations(self, login: str) -> list[dict[str, Any]]:
        out = []
        for inst in self.state["installations"].values():
            account = self.state["users"][inst["account"]]
            if inst["account"] == login or login in account.get("members", []):
                out.append(self.installation_json(inst["id"]))
        return out

    # --- webhooks -----------------------------------------------------------------------------------
    def sign(self, body: bytes) -> str:
        secret = self.state["app"]["webhook_secret"].encode()
        return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()

    def webhook(
        self, event: str, payload: dict[str, Any], delivery: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body GitHub would send for this event (signed with the webhook secret)."""
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": self.sign(body),
        }
        return headers, body

    def deliver(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers, body = self.webhook(event, payload)
        record: dict[str, Any] = {
            "id": headers["X-GitHub-Delivery"],
            "event": event,
            "action": payload.get("action"),
            "status": None,
        }
        if self.webhook_url:
            request = urllib.request.Request(self.webhook_url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    record["status"] = response.status
            except urllib.error.HTTPError as exc:
                record["status"] = exc.code
            except OSError as exc:
                record["status"] = f"failed: {exc.__class__.__name__}"
        with self.lock:
            self.state["deliveries"] = [*self.state["deliveries"][-99:], {**record, "payload": payload}]
            self._save()
        return record

    def redeliver(self, delivery_id: str) -> dict[str, Any]:
        """Send a recorded delivery again with the same id (GitHub's "Redeliver")."""
        found = next((d for d in self.state["deliveries"] if d["id"] == delivery_id), None)
        if found is None:
            raise HttpError(404, "Not Found")
        headers, body = self.webhook(found["event"], found["payload"], delivery=delivery_id)
        request = urllib.request.Request(self.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return {"id": delivery_id, "status": response.status}
        except urllib.error.HTTPError as exc:
            return {"id": delivery_id, "status": exc.code}


# --- HTTP ------------------------------------------------------------------------------------------

Route = tuple[str, re.Pattern[str], Callable[..., Any]]


class Handler(BaseHTTPRequestHandler):
    server: FakeGitHubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)

    @property
    def fake(self) -> FakeGitHub:
        return self.server.fake

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise HttpError(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "Problems parsing JSON")
        return data

    def send(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            raw = self._body()
            if re.fullmatch(r"/[^/]+/[^/]+\.git/.*", parts.path):
                self._git(parts.path, parts.query, raw)
                return
            for method, pattern, fn in self.server.routes:
                match = pattern.fullmatch(parts.path)
                if match and method == self.command:
                    self.fake.count(f"{method} {pattern.pattern}")
                    fn(self, query=query, body=raw, **match.groupdict())
                    return
            raise HttpError(404, "Not Found")
        except HttpError as exc:
            self.send(
                exc.status,
                {"message": exc.message, "documentation_url": "https://docs.github.com"},
                headers=exc.headers,
            )
        except Exception:  # a bug of the fake: say so, keep serving
            log.exception("fakegithub: %s %s failed", self.command, self.path)
            self.send(500, {"message": "fakegithub internal error"})

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _dispatch

    # --- git smart HTTP through `git http-backend` -------------------------------------------------
    def _git(self, path: str, query: str, body: bytes) -> None:
        match = re.fullmatch(r"/([^/]+)/([^/]+?)\.git(/.*)", path)
        assert match is not None
        full = f"{match.group(1)}/{match.group(2)}"
        if full not in self.fake.state["repos"]:
            raise HttpError(404, "Repository not found.")
        challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            self.fake.count("git_unauthenticated")
            raise HttpError(401, "Authentication required", challenge)
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
            if self.fake.git_denied:
                raise HttpError(401, "revoked")
            inst_id = self.fake.installation_for_token(password)
        except (ValueError, HttpError):
            self.fake.count("git_bad_credentials")
            raise HttpError(401, "Invalid username or token.", challenge) from None
        if full not in self.fake.installation_repos(inst_id):
            raise HttpError(404, "Repository not found.")
        if match.group(3).endswith("git-receive-pack") or "service=git-receive-pack" in query:
            raise HttpError(403, "Write access to repository not granted.")
        self.fake.count("git_requests")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.fake.dir / "git"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{full}.git{match.group(3)}",
            "REQUEST_METHOD": self.command,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.fake.dir),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name.strip():
                headers[name.strip()] = value.strip()
        content_type = headers.pop("Content-Type", "application/octet-stream")
        headers.pop("Content-Length", None)
        self.send(status, raw=payload, headers=headers, content_type=content_type)


def route(method: str, pattern: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        ROUTES.append((method, re.compile(pattern), fn))
        return fn

    return wrap


ROUTES: list[Route] = []


def _token(h: Handler) -> int:
    scheme, _, token = h.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token:
        raise HttpError(401, "Requires authentication")
    return h.fake.installation_for_token(token)


def _user(h: Handler) -> str:
    scheme, _, token = h.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token:
        raise HttpError(401, "Requires authentication")
    return h.fake.user_for_token(token)


def _page(h: Handler, query: dict[str, str], items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    try:
        per_page = max(1, min(100, int(query.get("per_page", "30"))))
        page = max(1, int(query.get("page", "1")))
    except ValueError:
        raise HttpError(422, "Invalid page") from None
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    path = urlsplit(h.path).path
    links = []

    def link(n: int, rel: str) -> str:
        return f'<{h.fake.base_url}{path}?{urlencode({"per_page": per_page, "page": n})}>; rel="{rel}"'

    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chunk, ({"Link": ", ".join(links)} if links else {})


# REST API -----------------------------------------------------------------------------------------


@route("GET", API + r"/app/installations/(?P<inst>\d+)")
def _get_installation(h: Handler, inst: str, **_: Any) -> None:
    h.fake.verify_jwt(h.headers.get("Authorization", ""))
    h.send(200, h.fake.installation_json(inst))


@route("POST", API + r"/app/installations/(?P<inst>\d+)/access_tokens")
def _access_token(h: Handler, inst: str, **_: Any) -> None:
    h.fake.verify_jwt(h.headers.get("Authorization", ""))
    h.send(201, h.fake.issue_token(int(inst)))


@route("GET", API + r"/installation/repositories")
def _installation_repos(h: Handler, query: dict[str, str], **_: Any) -> None:
    inst = _token(h)
    repos = [h.fake.repo_json(r) for r in h.fake.installation_repos(inst)]
    chunk, headers = _page(h, query, repos)
    h.send(200, {"total_count": len(repos), "repositories": chunk}, headers=headers)


def _visible_repo(h: Handler, owner: str, repo: str) -> str:
    inst = _token(h)
    full = f"{owner}/{repo}"
    if full not in h.fake.installation_repos(inst):
        raise HttpError(404, "Not Found")
    return full


@route("GET", API + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)")
def _repo(h: Handler, owner: str, repo: str, **_: Any) -> None:
    h.send(200, h.fake.repo_json(_visible_repo(h, owner, repo)))


@route("GET", API + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/branches")
def _branches(h: Handler, owner: str, repo: str, query: dict[str, str], **_: Any) -> None:
    full = _visible_repo(h, owner, repo)
    items = [{"name": b, "protected": False} for b in h.fake.branches(full)]
    chunk, headers = _page(h, query, items)
    h.send(200, chunk, headers=headers)


@route("GET", API + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/branches/(?P<branch>.+)")
def _branch(h: Handler, owner: str, repo: str, branch: str, **_: Any) -> None:
    full = _visible_repo(h, owner, repo)
    if branch not in h.fake.branches(full):
        raise HttpError(404, "Branch not found")
    h.send(200, {"name": branch, "protected": False})


@route("GET", API + r"/user")
def _get_user(h: Handler, **_: Any) -> None:
    login = _user(h)
    user = h.fake.state["users"][login]
    h.send(
        200, {**h.fake._owner(login), "id": user["id"], "name": login, "email": f"{login}@example.invalid"}
    )


@route("GET", API + r"/user/installations")
def _get_user_installations(h: Handler, query: dict[str, str], **_: Any) -> None:
    items = h.fake.user_installations(_user(h))
    chunk, headers = _page(h, query, items)
    h.send(200, {"total_count": len(items), "installations": chunk}, headers=headers)


# Web side -----------------------------------------------------------------------------------------


def _redirect(h: Handler, url: str) -> None:
    h.send(302, raw=b"", headers={"Location": url}, content_type="text/plain")


@route("GET", r"/apps/(?P<slug>[^/]+)/installations/new")
def _install_page(h: Handler, slug: str, query: dict[str, str], **_: Any) -> None:
    if slug != h.fake.state["app"]["slug"]:
        raise HttpError(404, "Not Found")
    state = html.escape(query.get("state", ""))
    login = html.escape(h.fake.signed_in)
    page = f"""<!doctype html><html><head><title>Install {html.escape(slug)}</title></head><body>
<h1>Install {html.escape(slug)}</h1><p>Signed in to the fake GitHub as <b>{login}</b>.</p>
<form method="post"><input type="hidden" name="state" value="{state}">
<label>Account <input name="account" value="{login}"></label>
<button type="submit" id="install">Install</button></form></body></html>"""
    h.send(200, raw=page.encode(), content_type="text/html; charset=utf-8")


@route("POST", r"/apps/(?P<slug>[^/]+)/installations/new")
def _install(h: Handler, slug: str, body: bytes, **_: Any) -> None:
    form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    account = form.get("account") or h.fake.signed_in
    inst = h.fake.create_installation(account, sender=h.fake.signed_in)
    if not h.fake.callback_url:
        h.send(201, inst)
        return
    params = {
        "installation_id": inst["id"],
        "setup_action": "install",
        "code": h.fake.new_code(h.fake.signed_in),
    }
    if form.get("state"):
        params["state"] = form["state"]
    _redirect(h, f"{h.fake.callback_url}?{urlencode(params)}")


@route("GET", r"/login/oauth/authorize")
def _authorize(h: Handler, query: dict[str, str], **_: Any) -> None:
    if query.get("client_id") != h.fake.state["app"]["client_id"] or not query.get("redirect_uri"):
        raise HttpError(400, "The client_id and/or redirect_uri is not valid")
    params = {"code": h.fake.new_code(h.fake.signed_in)}
    if query.get("state"):
        params["state"] = query["state"]
    _redirect(h, f"{query['redirect_uri']}?{urlencode(params)}")


@route("POST", r"/login/oauth/access_token")
def _oauth_token(h: Handler, body: bytes, query: dict[str, str], **_: Any) -> None:
    if h.headers.get("Content-Type", "").startswith("application/json"):
        form = {k: str(v) for k, v in h._json_body(body).items()}
    else:
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    form = {**query, **form}
    h.send(
        200,
        h.fake.exchange_code(form.get("client_id", ""), form.get("client_secret", ""), form.get("code", "")),
    )


# Control API (tests, make run) -------------------------------------------------------------------

CONTROL = r"/_fakegithub"


@route("GET", CONTROL + r"/state")
def _c_state(h: Handler, **_: Any) -> None:
    state = h.fake.state
    h.send(
        200,
        {
            "app": {"id": state["app"]["id"], "slug": state["app"]["slug"]},
            "repos": sorted(state["repos"]),
            "installations": [h.fake.installation_json(i) for i in state["installations"]],
            "counters": dict(h.fake.counters),
        },
    )


@route("GET", CONTROL + r"/settings")
def _c_settings(h: Handler, **_: Any) -> None:
    h.send(200, h.fake.tenter_settings())


@route("POST", CONTROL + r"/repos")
def _c_repo(h: Handler, body: bytes, **_: Any) -> None:
    data = h._json_body(body)
    h.send(
        201,
        h.fake.create_repo(
            str(data.get("owner", "")),
            str(data.get("name", "")),
            files=data.get("files"),
            default_branch=str(data.get("default_branch", "main")),
            branches=list(data.get("branches", [])),
            private=bool(data.get("private", True)),
            description=str(data.get("description", "")),
            owner_type=str(data.get("owner_type", "User")),
        ),
    )


@route("DELETE", CONTROL + r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/branches/(?P<branch>.+)")
def _c_delete_branch(h: Handler, owner: str, repo: str, branch: str, **_: Any) -> None:
    h.fake.delete_branch(f"{owner}/{repo}", branch)
    h.send(204)


@route("POST", CONTROL + r"/installations")
def _c_installation(h: Handler, body: bytes, **_: Any) -> None:
    data = h._json_body(body)
    repos = data.get("repositories")
    h.send(
        201,
        h.fake.create_installation(
            str(data.get("account", h.fake.signed_in)),
            account_type=str(data.get("account_type", "User")),
            repositories=None if repos is None else [str(r) for r in repos],
            members=[str(m) for m in data.get("members", [])],
        ),
    )


@route("POST", CONTROL + r"/installations/(?P<inst>\d+)/repositories")
def _c_inst_repos(h: Handler, inst: str, body: bytes, **_: Any) -> None:
    data = h._json_body(body)
    h.send(
        200, h.fake.change_repositories(int(inst), list(data.get("add", [])), list(data.get("remove", [])))
    )


@route("POST", CONTROL + r"/installations/(?P<inst>\d+)/(?P<verb>suspend|unsuspend)")
def _c_suspend(h: Handler, inst: str, verb: str, **_: Any) -> None:
    h.send(200, h.fake.set_suspended(int(inst), verb == "suspend"))


@route("DELETE", CONTROL + r"/installations/(?P<inst>\d+)")
def _c_delete(h: Handler, inst: str, **_: Any) -> None:
    h.send(200, h.fake.delete_installation(int(inst)))


@route("POST", CONTROL + r"/tokens/revoke")
def _c_revoke(h: Handler, body: bytes, **_: Any) -> None:
    data = h._json_body(body)
    inst = data.get("installation_id")
    h.send(200, {"revoked": h.fake.revoke_tokens(None if inst is None else int(inst))})


@route("POST", CONTROL + r"/git/deny")
def _c_git_deny(h: Handler, body: bytes, **_: Any) -> None:
    h.fake.git_denied = bool(h._json_body(body).get("deny", True))
    h.send(200, {"deny": h.fake.git_denied})


@route("POST", CONTROL + r"/oauth/code")
def _c_code(h: Handler, body: bytes, **_: Any) -> None:
    data = h._json_body(body)
    h.send(201, {"code": h.fake.new_code(str(data.get("login", h.fake.signed_in)))})


@route("GET", CONTROL + r"/deliveries")
def _c_deliveries(h: Handler, **_: Any) -> None:
    h.send(200, [{k: v for k, v in d.items() if k != "payload"} for d in h.fake.state["deliveries"]])


@route("POST", CONTROL + r"/deliveries/(?P<delivery>[^/]+)/redeliver")
def _c_redeliver(h: Handler, delivery: str, **_: Any) -> None:
    h.send(200, h.fake.redeliver(delivery))


class FakeGitHubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeGitHub, port: int = 0, host: str = "127.0.0.1", verbose: bool = False):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("fakegithub listens on loopback only")
        super().__init__((host, port), Handler)
        self.fake = fake
        self.verbose = verbose
        self.routes = ROUTES
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        fake.base_url = self.url

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="fakegithub", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


__all__ = ["FakeGitHub", "FakeGitHubServer", "HTTPStatus", "HttpError"]
