"""Writes of per-user settings: kubeconfig and AI agent settings, personal API tokens, login attempt limits,
and the support-staff actions on users."""

import secrets
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.utils import timezone

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import NotFound, ValidationFailed
from core.inputs import check_text
from core.reports import Report
from reconcile.kube import egress, kubeconfig
from userconfig.models import (
    API_TOKEN_PREFIX_LENGTH,
    ApiToken,
    CheckStatus,
    ConfigKey,
    Notice,
    User,
    UserConfig,
    hash_token,
)

AGENT_FIELDS = {
    "base_url": ConfigKey.ANTHROPIC_BASE_URL,
    "model": ConfigKey.ANTHROPIC_MODEL,
    "small_fast_model": ConfigKey.ANTHROPIC_SMALL_FAST_MODEL,
    "api_key": ConfigKey.ANTHROPIC_API_KEY,
}


def kubeconfig_parse(text: str) -> kubeconfig.KubeconfigInfo:
    """What an uploaded kubeconfig says (no network), or a ValidationFailed with the reason and its code."""
    try:
        info = kubeconfig.parse(text, allow_insecure_tls=settings.KUBECONFIG_ALLOW_INSECURE_TLS)
    except kubeconfig.KubeconfigError as exc:
        raise ValidationFailed(f"Unusable kubeconfig: {exc}.", code=exc.code) from None
    try:
        # Literal addresses and local names now; the workers vet every address again at connect time.
        egress.EgressPolicy.from_cidrs(settings.KUBE_EGRESS_ALLOW_CIDRS).check_url(info.server)
    except egress.EgressRefused as exc:
        raise ValidationFailed(
            f"Unusable kubeconfig: the server {info.server_host} is {exc}.", code="egress_refused"
        ) from None
    return info


def _kubeconfig_fields(text: str, info: kubeconfig.KubeconfigInfo) -> dict[str, Any]:
    return {
        "value": text,
        "category": "kc",
        "is_secret": True,
        "namespace": info.namespace,
        "server": info.server,
        "server_host": info.server_host,
        "check_status": CheckStatus.PENDING,
        "check_message": "",
        "checked_at": None,
    }


def kubeconfig_save(*, user: User, text: str, actor: Actor) -> UserConfig:
    """Parse, store encrypted, and queue the background cluster check. Refuses what cannot work.

    When the user already has a kubeconfig whose check passed, the new one is stored as *pending*: the
    working one stays in use until the new one passes its check (the worker promotes it then), or the
    user discards it or explicitly uses it anyway. A first kubeconfig, or one replacing a failing one,
    takes effect at once. Returns the row written (KUBECONFIG or KUBECONFIG_PENDING)."""
    info = kubeconfig_parse(text)
    with transaction.atomic():
        current = (
            UserConfig.objects.select_for_update()
            .defer("value")
            .filter(user=user, key=ConfigKey.KUBECONFIG)
            .first()
        )
        if current is not None and current.check_status == CheckStatus.OK:
            config, _ = UserConfig.objects.update_or_create(
                user=user, key=ConfigKey.KUBECONFIG_PENDING, defaults=_kubeconfig_fields(text, info)
            )
            audit.record(
                actor,
                "kubeconfig.save_pending",
                config,
                namespace=info.namespace,
                server_host=info.server_host,
            )
        else:
            config, _ = UserConfig.objects.update_or_create(
                user=user, key=ConfigKey.KUBECONFIG, defaults=_kubeconfig_fields(text, info)
            )
            UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG_PENDING).delete()
            audit.record(
                actor, "kubeconfig.save", config, namespace=info.namespace, server_host=info.server_host
            )
        kicks.kick_kubeconfig_check(user.pk)
    return config


def kubeconfig_pending(*, user_id: int, lock: bool = False) -> UserConfig | None:
    """The pending kubeconfig row with its content (for the check and for promotion)."""
    rows = UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG_PENDING)
    return (rows.select_for_update() if lock else rows).first()


def kubeconfig_promote(*, user: User, actor: Actor, pending: UserConfig, checked: bool) -> UserConfig:
    """Make the pending kubeconfig the one in use (the caller holds its lock and has refused stranding).

    `checked`: it passed its check (its result is kept); otherwise the user chose to use it anyway, and
    it keeps its failing result until the next check, which is queued."""
    with transaction.atomic():
        fields = {
            f: getattr(pending, f)
            for f in ("value", "category", "is_secret", "namespace", "server", "server_host")
        }
        fields |= {
            "check_status": pending.check_status,
            "check_message": pending.check_message,
            "checked_at": pending.checked_at,
        }
        config, _ = UserConfig.objects.update_or_create(user=user, key=ConfigKey.KUBECONFIG, defaults=fields)
        UserConfig.objects.filter(pk=pending.pk).delete()
        audit.record(
            actor,
            "kubeconfig.promote" if checked else "kubeconfig.use_anyway",
            config,
            namespace=config.namespace,
            server_host=config.server_host,
            check_status=config.check_status,
        )
        if not checked:
            kicks.kick_kubeconfig_check(user.pk)
    return config


def kubeconfig_pending_discard(*, user: User, actor: Actor) -> None:
    """Forget the pending kubeconfig; the one in use is untouched."""
    with transaction.atomic():
        deleted, _ = UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG_PENDING).delete()
        if not deleted:
            raise NotFound("No new kubeconfig is waiting.")
        audit.record(actor, "kubeconfig.discard_pending", user)


def kubeconfig_remove(*, user: User, actor: Actor) -> None:
    with transaction.atomic():
        deleted, _ = UserConfig.objects.filter(
            user=user, key__in=[ConfigKey.KUBECONFIG, ConfigKey.KUBECONFIG_PENDING]
        ).delete()
        if not deleted:
            raise NotFound("No kubeconfig is stored.")
        audit.record(actor, "kubeconfig.remove", user)


def kubeconfig_record_check(
    *, user_id: int, status: str, message: str, key: str = ConfigKey.KUBECONFIG, updated_at: Any = None
) -> None:
    """Store the result of a background check (called by the reconciler). With `updated_at`, only if
    the row was not replaced meanwhile (a newer upload gets its own check)."""
    rows = UserConfig.objects.filter(user_id=user_id, key=key)
    if updated_at is not None:
        rows = rows.filter(updated_at=updated_at)
    rows.update(check_status=status, check_message=message[:2000], checked_at=timezone.now())


def agent_settings_update(*, user: User, actor: Actor, **values: str | None) -> None:
    """Upsert the given agent settings; an empty string removes one, a missing one is left alone."""
    unknown = set(values) - set(AGENT_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown agent settings: {', '.join(sorted(unknown))}.")
    for field, value in values.items():
        if value is not None:
            check_text(value, field)
    with transaction.atomic():
        for field, value in values.items():
            key = AGENT_FIELDS[field]
            if value is None:
                continue
            if value == "":
                UserConfig.objects.filter(user=user, key=key).delete()
                continue
            UserConfig.objects.update_or_create(
                user=user,
                key=key,
                defaults={
                    "value": value,
                    "category": "anthropic",
                    "is_secret": key == ConfigKey.ANTHROPIC_API_KEY,
                },
            )
        audit.record(
            actor, "agent_settings.update", user, fields=sorted(k for k, v in values.items() if v is not None)
        )


# --- idle stop: the user's own default ---------------------------------------------------------------

IDLE_STOP_MAX_MINUTES = 7 * 24 * 60


def validate_idle_minutes(minutes: Any) -> int | None:
    """An idle timeout as stored: None = the next level's default, 0 = never, else whole minutes."""
    if minutes is None or (type(minutes) is int and 0 <= minutes <= IDLE_STOP_MAX_MINUTES):
        return minutes  # type: ignore[no-any-return]
    raise ValidationFailed(
        f"Idle stop must be a number of minutes from 0 (never) to {IDLE_STOP_MAX_MINUTES}, or null.",
        code="invalid_idle_stop",
    )


def idle_stop_default_set(*, user: User, minutes: Any, actor: Actor) -> User:
    """The user's own idle timeout for their projects: None = settings.IDLE_STOP_MINUTES, 0 = never.
    A project's own timeout still wins over it."""
    minutes = validate_idle_minutes(minutes)
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(idle_stop_minutes=minutes)
        user.idle_stop_minutes = minutes
        audit.record(actor, "user.idle_stop", user, minutes=minutes)
    return user


def kubeconfig_recheck(*, user: User, actor: Actor) -> UserConfig:
    """Forget the last cluster check result (back to PENDING) and queue the check again (operator action)."""
    with transaction.atomic():
        config = (
            UserConfig.objects.select_for_update()
            .defer("value")
            .filter(user=user, key=ConfigKey.KUBECONFIG)
            .first()
        )
        if config is None:
            raise NotFound("No kubeconfig is stored.")
        previous = config.check_status
        UserConfig.objects.filter(pk=config.pk).update(
            check_status=CheckStatus.PENDING, check_message="", updated_at=timezone.now()
        )
        config.check_status, config.check_message = CheckStatus.PENDING, ""
        audit.record(actor, "kubeconfig.recheck", config, previous_status=previous)
        kicks.kick_kubeconfig_check(user.pk)
    return config


# --- support staff (admin actions) ----------------------------------------------------------------


def recheck_kubeconfigs(*, user_ids: Iterable[Any], actor: Actor) -> Report:
    """Reset each user's kubeconfig check to PENDING and queue the cluster check again."""
    report = Report("user", "queued for a kubeconfig re-check")
    ids = sorted(set(user_ids))
    users = {u.pk: u for u in User.objects.filter(pk__in=ids)}
    for user_id in ids:
        user = users.get(user_id)
        if user is None:
            report.skip("gone")
            continue
        try:
            kubeconfig_recheck(user=user, actor=actor)
        except NotFound:
            report.skip("no kubeconfig")
            continue
        report.done.append(str(user_id))
    return report


def revoke_api_tokens(*, user_ids: Iterable[Any], actor: Actor) -> Report:
    """Revoke every usable API token of the users; the secrets are never known, shown or recorded."""
    report = Report("user", "had their API tokens revoked")
    ids = sorted(set(user_ids))
    now = timezone.now()
    with transaction.atomic():
        tokens = list(
            ApiToken.objects.select_for_update().select_related("user").usable(now).filter(user_id__in=ids)
        )
        holders = {t.user_id: t.user for t in tokens}
        for _ in range(len(ids) - len(holders)):
            report.skip("no token")
        if tokens:
            ApiToken.objects.filter(pk__in=[t.pk for t in tokens]).update(revoked_at=now)
            audit.record_many(actor, "admin.revoke_api_token", tokens, lambda t: {"prefix": t.prefix})
        report.done = [str(pk) for pk in sorted(holders)]
    return report


# --- personal API tokens --------------------------------------------------------------------------

API_TOKEN_SECRET_PREFIX = "tnt_"
API_TOKEN_MAX_PER_USER = 50
API_TOKEN_MAX_DAYS = 3650


def new_token_secret() -> str:
    """256 random bits, URL-safe; the fixed start makes a leaked token easy to recognise."""
    return API_TOKEN_SECRET_PREFIX + secrets.token_urlsafe(32)


def api_token_create(
    *, user: User, name: str, actor: Actor, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """A new token and its secret. The secret is returned here only: the row keeps its hash."""
    name = check_text(name.strip(), "name")
    if not name:
        raise ValidationFailed("Give the token a name.", details={"field": "name"})
    if len(name) > ApiToken._meta.get_field("name").max_length:  # type: ignore[operator]
        raise ValidationFailed("The name is too long (100 characters at most).", details={"field": "name"})
    if expires_in_days is not None and not 1 <= expires_in_days <= API_TOKEN_MAX_DAYS:
        raise ValidationFailed(
            f"Expiry must be between 1 and {API_TOKEN_MAX_DAYS} days.", details={"field": "expires_in_days"}
        )
    now = timezone.now()
    secret = new_token_secret()
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # serialise the per-user limit
        if ApiToken.objects.usable(now).filter(user=user).count() >= API_TOKEN_MAX_PER_USER:
            raise ValidationFailed(
                f"You have {API_TOKEN_MAX_PER_USER} active tokens; revoke one first.", code="too_many_tokens"
            )
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:API_TOKEN_PREFIX_LENGTH],
            token_hash=hash_token(secret),
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        audit.record(
            actor,
            "api_token.create",
            token,
            prefix=token.prefix,
            expires_at=token.expires_at and token.expires_at.isoformat(),
        )
    return token, secret


def api_token_revoke(*, user: User, token_id: Any, actor: Actor) -> ApiToken:
    """Revoke one of the user's own tokens (another user's, or an unknown id, is not found)."""
    with transaction.atomic():
        pk = str(token_id)
        token = (
            ApiToken.objects.select_for_update()
            .filter(pk=int(pk), user=user, revoked_at__isnull=True)
            .first()
            if pk.isascii() and pk.isdigit() and len(pk) <= 18
            else None
        )
        if token is None:
            raise NotFound("No such API token.")
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "api_token.revoke", token, prefix=token.prefix)
    return token


API_TOKEN_TOUCH_SECONDS = 60


def api_token_touch(token: ApiToken) -> None:
    """Note that the token was used, at most once a minute (a conditional UPDATE, no lock held)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < timedelta(
        seconds=API_TOKEN_TOUCH_SECONDS
    ):
        return
    stale = now - timedelta(seconds=API_TOKEN_TOUCH_SECONDS)
    ApiToken.objects.filter(pk=token.pk).filter(
        models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=stale)
    ).update(last_used_at=now)
    token.last_used_at = now


# --- login attempt limits (the cache; nothing here is a secret) ------------------------------------


def _login_keys(username: str, ip: str | None) -> list[str]:
    keys = [f"login-fail:user:{hash_token(username.strip().lower())}"]
    if ip:
        keys.append(f"login-fail:ip:{ip}")
    return keys


def login_retry_after(*, username: str, ip: str | None) -> int | None:
    """Seconds until a sign-in may be tried again for this account or address, or None if allowed."""
    limit, window = settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_WINDOW_SECONDS
    waits = []
    for key in _login_keys(username, ip):
        if (cache.get(key) or 0) >= limit:
            started = cache.get(f"{key}:start") or time.time()
            waits.append(max(1, int(started + window - time.time()) + 1))
    return max(waits) if waits else None


def login_failed(*, username: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key in _login_keys(username, ip):
        if cache.add(key, 0, timeout=window):
            cache.set(f"{key}:start", time.time(), timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            cache.set(f"{key}:start", time.time(), timeout=window)


def login_succeeded(*, username: str) -> None:
    """A successful sign-in clears the account's failures (the address's count stays)."""
    for key in _login_keys(username, None):
        cache.delete_many([key, f"{key}:start"])


def github_unlink(*, user: User, actor: Actor) -> None:
    """Remove the user's GitHub identity. Refused when it is their only way in (no usable password)."""
    from allauth.socialaccount.models import SocialAccount

    with transaction.atomic():
        account = SocialAccount.objects.select_for_update().filter(user=user, provider="github").first()
        if account is None:
            raise NotFound("No GitHub account is linked.")
        if not user.has_usable_password():
            raise ValidationFailed(
                "Your account has no password: unlinking GitHub would lock you out. "
                "Ask an operator to set a password first."
            )
        login = (account.extra_data or {}).get("login") or account.uid
        account.delete()
        audit.record(actor, "github.unlink", user, login=str(login), uid=account.uid)


# --- notices: one-time messages to a user --------------------------------------------------------


def notice_add(*, user_id: int, message: str) -> Notice:
    return Notice.objects.create(user_id=user_id, message=message[:2000])


def notices_take(*, user: User, limit: int = 20) -> list[Notice]:
    """The user's unseen notices (oldest first), now marked seen: each is shown once. One query when
    there is none (the project list's query count stays constant)."""
    notices = list(Notice.objects.filter(user=user, seen_at__isnull=True)[:limit])
    if notices:
        Notice.objects.filter(pk__in=[n.pk for n in notices], seen_at__isnull=True).update(
            seen_at=timezone.now()
        )
    return notices
