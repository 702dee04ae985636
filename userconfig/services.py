"""Writes of per-user settings: kubeconfig and AI agent settings, and the support-staff actions on users."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import NotFound, ValidationFailed
from core.inputs import check_text
from core.reports import Report
from reconcile.kube import egress, kubeconfig
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig

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


def kubeconfig_save(*, user: User, text: str, actor: Actor) -> UserConfig:
    """Parse, store encrypted, and queue the background cluster check. Refuses what cannot work."""
    info = kubeconfig_parse(text)
    with transaction.atomic():
        config, _ = UserConfig.objects.update_or_create(
            user=user,
            key=ConfigKey.KUBECONFIG,
            defaults={
                "value": text,
                "category": "kc",
                "is_secret": True,
                "namespace": info.namespace,
                "server": info.server,
                "server_host": info.server_host,
                "check_status": CheckStatus.PENDING,
                "check_message": "",
                "checked_at": None,
            },
        )
        audit.record(actor, "kubeconfig.save", config, namespace=info.namespace, server_host=info.server_host)
        kicks.kick_kubeconfig_check(user.pk)
    return config


def kubeconfig_remove(*, user: User, actor: Actor) -> None:
    with transaction.atomic():
        deleted, _ = UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG).delete()
        if not deleted:
            raise NotFound("No kubeconfig is stored.")
        audit.record(actor, "kubeconfig.remove", user)


def kubeconfig_record_check(*, user_id: int, status: str, message: str) -> None:
    """Store the result of a background check (called by the reconciler)."""
    UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG).update(
        check_status=status, check_message=message[:2000], checked_at=timezone.now()
    )


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
    """Delete the users' REST API tokens (DRF authtoken); the key itself is never shown or recorded."""
    report = Report("user", "had their API token revoked")
    ids = sorted(set(user_ids))
    with transaction.atomic():
        tokens = list(Token.objects.select_related("user").filter(user_id__in=ids))
        holders = [t.user for t in tokens]
        for _ in range(len(ids) - len(holders)):
            report.skip("no token")
        if holders:
            Token.objects.filter(user_id__in=[u.pk for u in holders]).delete()
            audit.record_many(actor, "admin.revoke_api_token", holders)
        report.done = [str(u.pk) for u in holders]
    return report
