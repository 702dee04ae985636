"""Who is acting, and the one writer of the audit trail every service uses."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest
from rest_framework.request import Request

from core.models import AuditEntry


class ActorKind(models.TextChoices):
    USER = "user"
    RECONCILER = "reconciler"
    ADMIN = "admin"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """The person or process behind a service call: a user (API or dashboard), staff in the admin,
    or the reconciler."""

    user: Any = None  # a User, or None for the reconciler/system
    kind: str = ActorKind.USER
    ip: str | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


RECONCILER = Actor(kind=ActorKind.RECONCILER)
SYSTEM = Actor(kind=ActorKind.SYSTEM)


def client_ip(request: HttpRequest | Request) -> str | None:
    """The client address for the audit trail. X-Forwarded-For is trusted only behind a known proxy
    (USE_X_FORWARDED_FOR), since any client can send that header."""
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR") or None


def actor_for(request: HttpRequest | Request, kind: str = ActorKind.USER) -> Actor:
    """The signed-in user behind a request (kind "admin" for staff in the admin)."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied
    return Actor(user=user, kind=kind, ip=client_ip(request))


def _entry(actor: Actor, action: str, target: models.Model | None, details: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        actor=actor.user,
        actor_kind=actor.kind,
        action=action,
        target_type=str(target._meta.model_name) if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        ip_address=actor.ip,
        details=details,
    )


def record(actor: Actor, action: str, target: models.Model | None = None, **details: Any) -> AuditEntry:
    entry = _entry(actor, action, target, details)
    entry.save(force_insert=True)
    return entry


def record_each(actor: Actor, entries: Iterable[tuple[str, models.Model, dict[str, Any]]]) -> None:
    """One entry per (action, target, details), in a single INSERT (the reconciler's batch of steps)."""
    AuditEntry.objects.bulk_create(
        _entry(actor, action, target, details) for action, target, details in entries
    )


def record_many(
    actor: Actor,
    action: str,
    targets: Iterable[Any],
    details: Callable[[Any], dict[str, Any]] | None = None,
) -> list[AuditEntry]:
    """One entry per target (with `details(target)`), in a single INSERT."""
    return AuditEntry.objects.bulk_create(
        _entry(actor, action, target, details(target) if details else {}) for target in targets
    )
