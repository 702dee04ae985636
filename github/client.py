"""The GitHub App client: the App's JWT, installation tokens, and the few REST calls Tenter makes.

Pure Python (no Django, no app): `github/connect.py` builds one from settings. Every call goes to the
configured API or web base URL through the egress policy (`reconcile/kube/egress.py`), with timeouts and
without following redirects; pagination follows page numbers, never a URL from a response. Errors leave
as `GitHubError` whose message is Tenter's own words (never bytes from the response).

Installation tokens are kept in this process's memory only, until shortly before they expire; they are
never logged, stored or returned by Tenter's API.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reconcile.kube.egress import EgressPolicy, EgressRefused
from reconcile.kube.transport import EgressPoolManager

API_VERSION = "2022-11-28"
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
TOKEN_MARGIN_SECONDS = 300  # a cached token is renewed this long before it expires
PER_PAGE = 100
MAX_PAGES = 50  # 5000 repositories per installation
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


class GitHubError(Exception):
    """A failed GitHub call. `message` is safe to show to users; `status` is GitHub's HTTP status (0: no
    response), `code` a short name for it."""

    def __init__(self, message: str, *, status: int = 0, code: str = "github_error"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class NotConfigured(GitHubError):
    def __init__(self, message: str = "The GitHub App is not configured on this server."):
        super().__init__(message, code="github_not_configured")


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """The App's private key from a PEM (literal `\\n` escapes allowed) or base64 of a PEM."""
    value = text.strip().replace("\\n", "\n")
    if "-----BEGIN" not in value:
        try:
            value = base64.b64decode(value, validate=False).decode()
        except (ValueError, UnicodeDecodeError):
            raise NotConfigured("GITHUB_APP_PRIVATE_KEY is neither a PEM nor base64 of one.") from None
    try:
        key = serialization.load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError):
        raise NotConfigured("GITHUB_APP_PRIVATE_KEY is not a usable private key.") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise NotConfigured("GITHUB_APP_PRIVATE_KEY must be an RSA key.")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: float | None = None) -> str:
    """An RS256 JWT for the App: issued a minute ago (clock drift), valid 9 minutes."""
    now = time.time() if now is None else now
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": str(app_id)}
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{_b64url(signature)}"


@dataclass
class _Token:
    value: str = field(repr=False)
    expires: float


@dataclass(frozen=True)
class AppSettings:
    app_id: str
    slug: str
    private_key: str = field(repr=False)
    api_url: str
    web_url: str
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    egress_allow: tuple[str, ...] = ()
    connect_timeout: float = 3.0
    read_timeout: float = 10.0


class GitHubApp:
    """Calls made as the App (JWT) or as one of its installations (installation token)."""

    def __init__(self, config: AppSettings) -> None:
        if not (config.app_id and config.private_key and config.api_url):
            raise NotConfigured()
        self.config = config
        self.api_url = config.api_url.rstrip("/")
        self.web_url = config.web_url.rstrip("/")
        self._key: rsa.RSAPrivateKey | None = None
        self._tokens: dict[int, _Token] = {}
        self._lock = threading.Lock()
        self._http = EgressPoolManager(
            EgressPolicy.from_cidrs(config.egress_allow),
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
            retries=False,
        )

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.config.app_id!r}, api_url={self.api_url!r})"

    # --- transport ------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        url: str,
        *,
        auth: str = "",
        body: dict[str, Any] | None = None,
        form: bool = False,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "Tenter",
        }
        if auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, url, body=data, headers=headers, preload_content=False)
        except EgressRefused:
            raise GitHubError(
                "GitHub's address is refused by the egress policy.", code="github_refused"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise GitHubError("GitHub could not be reached.", code="github_unreachable") from None
        try:
            raw = response.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError):
            raise GitHubError("GitHub's answer was cut off.", code="github_unreachable") from None
        finally:
            response.release_conn()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise GitHubError("GitHub's answer was too large.", status=response.status)
        if 300 <= response.status < 400:
            raise GitHubError("GitHub answered with a redirect (not followed).", status=response.status)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return response.status, parsed, {k.lower(): v for k, v in response.headers.items()}

    def _check(self, status: int, parsed: Any, what: str) -> Any:
        if 200 <= status < 300 and parsed is not None:
            return parsed
        if status == 404:
            raise GitHubError(
                f"{what}: not found on GitHub (or no access).", status=404, code="github_not_found"
            )
        if status in (401, 403):
            raise GitHubError(
                f"{what}: GitHub refused the App's credentials.", status=status, code="github_denied"
            )
        if status == 0 or status >= 500 or status == 429:
            raise GitHubError(
                f"{what}: GitHub is unavailable (HTTP {status}).", status=status, code="github_unavailable"
            )
        raise GitHubError(f"{what}: GitHub answered HTTP {status}.", status=status)

    def _key_(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = load_private_key(self.config.private_key)
        return self._key

    def jwt(self) -> str:
        return app_jwt(self.config.app_id, self._key_())

    # --- as the App ------------------------------------------------------------------------------------
    def installation(self, installation_id: int) -> dict[str, Any]:
        status, parsed, _ = self._request(
            "GET", f"{self.api_url}/app/installations/{int(installation_id)}", auth=f"Bearer {self.jwt()}"
        )
        data = self._check(status, parsed, "The installation")
        if not isinstance(data, dict):
            raise GitHubError("The installation: GitHub's answer is not understood.", status=status)
        return data

    def installation_token(self, installation_id: int, *, fresh: bool = False) -> str:
        """A token for the installation: the cached one while it has more than a few minutes left."""
        installation_id = int(installation_id)
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and not fresh and cached.expires - TOKEN_MARGIN_SECONDS > time.time():
                return cached.value
        status, parsed, _ = self._request(
            "POST",
            f"{self.api_url}/app/installations/{installation_id}/access_tokens",
            auth=f"Bearer {self.jwt()}",
            body={},
        )
        data = self._check(status, parsed, "An installation token")
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise GitHubError("An installation token: GitHub's answer is not understood.", status=status)
        try:
            expires = datetime.fromisoformat(
                str(data.get("expires_at", "")).replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            expires = time.time() + 600
        with self._lock:
            self._tokens[installation_id] = _Token(token, expires)
        return token

    def forget_token(self, installation_id: int) -> None:
        with self._lock:
            self._tokens.pop(int(installation_id), None)

    # --- as an installation ----------------------------------------------------------------------------
    def _as_installation(self, installation_id: int, path: str, what: str) -> tuple[Any, dict[str, str]]:
        for attempt in (1, 2):
            token = self.installation_token(installation_id, fresh=attempt == 2)
            status, parsed, headers = self._request("GET", f"{self.api_url}{path}", auth=f"token {token}")
            if status == 401 and attempt == 1:  # revoked since we cached it: one fresh token, once
                continue
            return self._check(status, parsed, what), headers
        raise AssertionError("unreachable")

    def installation_repositories(self, installation_id: int) -> list[dict[str, Any]]:
        """Every repository the installation can access (all pages)."""
        out: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            data, headers = self._as_installation(
                installation_id,
                f"/installation/repositories?{urlencode({'per_page': PER_PAGE, 'page': page})}",
                "The installation's repositories",
            )
            repos = data.get("repositories") if isinstance(data, dict) else None
            if not isinstance(repos, list):
                raise GitHubError("The installation's repositories: GitHub's answer is not understood.")
            out += [r for r in repos if isinstance(r, dict)]
            if 'rel="next"' not in headers.get("link", "") or not repos:
                break
        return out

    def repository(self, installation_id: int, full_name: str) -> dict[str, Any]:
        if not REPO_RE.fullmatch(full_name):
            raise GitHubError("The repository name is not owner/name.", code="invalid_repository")
        owner, name = full_name.split("/", 1)
        data, _ = self._as_installation(
            installation_id, f"/repos/{quote(owner)}/{quote(name)}", f"The repository {full_name}"
        )
        if not isinstance(data, dict):
            raise GitHubError("The repository: GitHub's answer is not understood.")
        return data

    def branch_exists(self, installation_id: int, full_name: str, branch: str) -> bool:
        owner, name = full_name.split("/", 1)
        try:
            self._as_installation(
                installation_id,
                f"/repos/{quote(owner)}/{quote(name)}/branches/{quote(branch, safe='')}",
                f"The branch {branch}",
            )
        except GitHubError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def clone_url(self, full_name: str) -> str:
        """The HTTPS address git clones the repository from (the web URL; no credentials in it)."""
        return f"{self.web_url}/{full_name}.git"

    # --- as a user (OAuth during installation) ---------------------------------------------------------
    def exchange_code(self, code: str) -> str:
        """The user's access token for an OAuth `code` (sent to the callback during installation)."""
        if not (self.config.client_id and self.config.client_secret):
            raise NotConfigured("GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are not set.")
        status, parsed, _ = self._request(
            "POST",
            f"{self.web_url}/login/oauth/access_token",
            body={
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
                "code": code,
            },
        )
        token = parsed.get("access_token") if isinstance(parsed, dict) and status == 200 else None
        if not isinstance(token, str) or not token:
            raise GitHubError(
                "GitHub did not accept the sign-in code (expired or used?).",
                status=status,
                code="github_code_refused",
            )
        return token

    def user_installation_ids(self, user_token: str) -> set[int]:
        ids: set[int] = set()
        for page in range(1, MAX_PAGES + 1):
            status, parsed, headers = self._request(
                "GET",
                f"{self.api_url}/user/installations?{urlencode({'per_page': PER_PAGE, 'page': page})}",
                auth=f"token {user_token}",
            )
            data = self._check(status, parsed, "Your installations")
            items = data.get("installations") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise GitHubError("Your installations: GitHub's answer is not understood.")
            ids |= {int(i["id"]) for i in items if isinstance(i, dict) and isinstance(i.get("id"), int)}
            if 'rel="next"' not in headers.get("link", "") or not items:
                break
        return ids


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
