"""Who is acting, and the audit trail every service writes to."""

from dataclasses import dataclass
from typing import Any

from django.db import models

from projects.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """The person or process behind a service call: a user (API or dashboard), staff in the admin,
    or the reconciler."""

    user: Any = None  # a User, or None for the reconciler/system
    kind: str = "user"  # user | admin | reconciler | system
    ip: str | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


RECONCILER = Actor(kind="reconciler")
SYSTEM = Actor(kind="system")


def record(actor: Actor, action: str, target: models.Model | None = None, **details: Any) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=actor.user,
        actor_kind=actor.kind,
        action=action,
        target_type=str(target._meta.model_name) if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        ip_address=actor.ip,
        details=details,
    )
