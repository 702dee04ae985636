"""Permission-scoped reads of installations, and the repositories an installation can access."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.errors import NotFound, ServiceError
from github import connect
from github.client import GitHubError
from github.models import GitHubInstallation, InstallationStatus
from userconfig.models import User


class GitHubUnavailable(ServiceError):
    status_code = 502
    code = "github_unavailable"


def as_service_error(exc: GitHubError) -> ServiceError:
    """A GitHub failure as the error a user sees (Tenter's words only)."""
    if exc.code == "github_not_configured":
        return ServiceError(exc.message, code="github_not_configured")
    return GitHubUnavailable(exc.message, details={"status": exc.status} if exc.status else {})


def installations_for(*, user: User) -> QuerySet[GitHubInstallation]:
    return GitHubInstallation.objects.filter(user=user).exclude(status=InstallationStatus.DELETED)


def installation_get(*, user: User, installation_id: Any) -> GitHubInstallation:
    try:
        number = int(str(installation_id))
    except ValueError:
        raise NotFound("Installation not found.") from None
    found = GitHubInstallation.objects.filter(user=user, installation_id=number).first()
    if found is None:
        raise NotFound("Installation not found.")
    return found


def _brief(repo: dict[str, Any]) -> dict[str, Any]:
    owner = repo.get("owner") if isinstance(repo.get("owner"), dict) else {}
    return {
        "id": repo.get("id") if isinstance(repo.get("id"), int) else None,
        "full_name": str(repo.get("full_name", ""))[:200],
        "name": str(repo.get("name", ""))[:100],
        "owner": str((owner or {}).get("login", ""))[:100],
        "private": bool(repo.get("private", False)),
        "default_branch": str(repo.get("default_branch") or "")[:200],
        "description": str(repo.get("description") or "")[:300],
    }


def repositories(*, installation: GitHubInstallation, search: str = "") -> list[dict[str, Any]]:
    """The installation's repositories from GitHub (every page), sorted by name, those whose name contains
    `search` (case-insensitive)."""
    try:
        repos = connect.app().installation_repositories(installation.installation_id)
    except GitHubError as exc:
        raise as_service_error(exc) from None
    needle = search.strip().lower()
    out = [_brief(r) for r in repos]
    if needle:
        out = [r for r in out if needle in r["full_name"].lower()]
    return sorted(out, key=lambda r: r["full_name"].lower())
