"""Drift and orphans (DESIGN §5): the slower sweep over stable rows and over the cluster.

- Drift of stable rows (missing or changed objects, pods no longer ready) is the verification
  sweep's: reconcile/verify.py.
- Objects labelled as Tenter's whose row no longer exists are orphans: reported in the log, and
  deleted once they are older than ORPHAN_DELETE_AFTER_MINUTES (0 = report only). Celery beat runs
  the orphan sweep every 5 minutes (`reconcile.sweep_orphans`).
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from reconcile import manifests
from reconcile.kube.errors import KubeConflict, KubeNotFound
from reconcile.runner import client_for
from sandboxes.models import Database, Sandbox
from userconfig.models import UserConfig

logger = logging.getLogger(__name__)

DRIFT_BATCH = 100
ORPHAN_KINDS = ["StatefulSet", "Service", "Ingress", "Secret"]


def _resource_id(obj: dict[str, Any]) -> str | None:
    """The row id in an object's resource label (None when missing or not a row id)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(manifests.RESOURCE_LABEL)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def find_orphans(config: UserConfig, now: datetime | None = None) -> list[tuple[str, str, bool]]:
    """(kind, name, deleted) for each Tenter-labelled object in the user's namespace with no row.

    A row of any owner counts: several users may share a namespace, and one user's sweep must not
    take another's objects for orphans. The rows are read after the objects are listed; since a row
    is committed before its objects are created, an object being created is never an orphan.
    """
    now = now or timezone.now()
    client = client_for(config)
    managed = f"{manifests.MANAGED_BY}={manifests.MANAGED_BY_VALUE}"
    objects = [(kind, obj) for kind in ORPHAN_KINDS for obj in client.list(kind, label_selector=managed)]
    ids = {rid for _, obj in objects if (rid := _resource_id(obj))}
    known = {
        str(pk)
        for model in (Sandbox, Database)
        for pk in model.objects.filter(pk__in=ids).values_list("pk", flat=True)
    }
    grace = settings.ORPHAN_DELETE_AFTER_MINUTES
    found = []
    for kind, obj in objects:
        if _resource_id(obj) in known:
            continue
        meta = obj.get("metadata") or {}
        created = datetime.fromisoformat(str(meta.get("creationTimestamp", "")).replace("Z", "+00:00"))
        delete = bool(grace) and now - created > timedelta(minutes=grace)
        if delete:
            try:  # this very object: if the name was taken again meanwhile, the new one is left alone
                client.delete(kind, meta["name"], uid=meta.get("uid"))
            except KubeNotFound:
                pass
            except KubeConflict:
                delete = False
        logger.warning(
            "orphan %s %s/%s%s", kind, config.namespace, meta.get("name"), " deleted" if delete else ""
        )
        found.append((kind, str(meta.get("name")), delete))
    return found
