"""Reads of per-user settings, always scoped to one user."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from core.secrets import SECRET_MASK
from userconfig.models import ApiToken, ConfigKey, User, UserConfig, hash_token


def kubeconfig_state(*, user: User) -> UserConfig | None:
    """The kubeconfig row without its (encrypted) content."""
    return UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG).defer("value").first()


def kubeconfig_pending_state(*, user: User) -> UserConfig | None:
    """The new kubeconfig waiting for its check (the current one stays in use), without its content."""
    return UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG_PENDING).defer("value").first()


def kubeconfig_text(*, user_id: int) -> str | None:
    row = UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG).only("value").first()
    return row.value if row else None


@dataclass(frozen=True)
class AgentSettings:
    base_url: str
    model: str
    small_fast_model: str
    api_key_set: bool
    api_key_masked: str


def agent_settings(*, user: User) -> AgentSettings:
    rows = {
        c.key: c.value
        for c in UserConfig.objects.filter(user=user).exclude(
            key__in=[ConfigKey.KUBECONFIG, ConfigKey.KUBECONFIG_PENDING]
        )
    }
    key = rows.get(ConfigKey.ANTHROPIC_API_KEY, "")
    return AgentSettings(
        base_url=rows.get(ConfigKey.ANTHROPIC_BASE_URL, ""),
        model=rows.get(ConfigKey.ANTHROPIC_MODEL, ""),
        small_fast_model=rows.get(ConfigKey.ANTHROPIC_SMALL_FAST_MODEL, ""),
        api_key_set=bool(key),
        api_key_masked=SECRET_MASK if key else "",
    )


AGENT_ENV_NAMES = {
    ConfigKey.ANTHROPIC_API_KEY: "ANTHROPIC_AUTH_TOKEN",
    ConfigKey.ANTHROPIC_BASE_URL: "ANTHROPIC_BASE_URL",
    ConfigKey.ANTHROPIC_MODEL: "ANTHROPIC_MODEL",
    ConfigKey.ANTHROPIC_SMALL_FAST_MODEL: "ANTHROPIC_SMALL_FAST_MODEL",
}


def agent_env(*, user_id: int) -> dict[str, str]:
    """User-level variables projected into sandboxes (override project env, as in the reference)."""
    return agent_envs(user_ids=[user_id]).get(user_id, {})


def agent_envs(*, user_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """`agent_env` of many users in one query (the reconciler's batch)."""
    envs: dict[int, dict[str, str]] = {}
    for row in UserConfig.objects.filter(user_id__in=list(user_ids), key__in=list(AGENT_ENV_NAMES)):
        envs.setdefault(row.user_id, {})[AGENT_ENV_NAMES[ConfigKey(row.key)]] = row.value
    return envs


def api_tokens(*, user: User) -> QuerySet[ApiToken]:
    """The user's tokens not revoked (expired ones included, marked by their expiry), newest first."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at", "-id")


def api_token_for_secret(secret: str) -> ApiToken | None:
    """The usable token with this secret (never revoked or expired), with its user; None otherwise."""
    if not secret or len(secret) > 200:
        return None
    return (
        ApiToken.objects.usable(timezone.now())
        .select_related("user")
        .filter(token_hash=hash_token(secret))
        .first()
    )


@dataclass(frozen=True)
class GitHubIdentity:
    login: str
    uid: str


def github_identity(*, user: User) -> GitHubIdentity | None:
    """The GitHub identity linked to the user (Sign in with GitHub), or None. No token: none is stored."""
    from allauth.socialaccount.models import SocialAccount

    account = SocialAccount.objects.filter(user=user, provider="github").only("uid", "extra_data").first()
    if account is None:
        return None
    return GitHubIdentity(login=str((account.extra_data or {}).get("login") or account.uid), uid=account.uid)
