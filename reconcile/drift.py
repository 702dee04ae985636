"""Drift and orphans (DESIGN §5): the slower sweep over stable rows and over the cluster.

- A RUNNING sandbox whose StatefulSet is gone is moved back to CREATING ("drift"); the normal
  reconciler re-creates its objects. The move goes through `change_status`, so a worker holding a
  lease cannot overwrite it.
- Objects labelled as Tenter's whose row no longer exists are orphans: reported in the log, and
  deleted once they are older than ORPHAN_DELETE_AFTER_MINUTES (0 = report only). Celery beat runs
  the orphan sweep every 5 minutes (`reconcile.sweep_orphans`).
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.audit import RECONCILER
from projects.transitions import change_status
from reconcile import manifests
from reconcile.kube.errors import KubeConflict, KubeError, KubeNotFound
from reconcile.runner import client_for
from sandboxes.models import Database, ResourceStatus, Sandbox
from userconfig.models import CheckStatus, ConfigKey, UserConfig

logger = logging.getLogger(__name__)

DRIFT_BATCH = 100
ORPHAN_KINDS = ["StatefulSet", "Service", "Ingress", "Secret"]


def check_drift(batch: int = DRIFT_BATCH) -> int:
    """Check the least recently observed RUNNING sandboxes. Returns how many drifted."""
    rows = list(
        Sandbox.objects.select_related("project")
        .filter(status=ResourceStatus.RUNNING)
        .order_by(F("last_observed_at").asc(nulls_first=True))[:batch]
    )
    configs = {
        c.user_id: c
        for c in UserConfig.objects.filter(
            user_id__in={r.project.owner_id for r in rows},
            key=ConfigKey.KUBECONFIG,
            check_status=CheckStatus.OK,
        )
    }
    drifted = 0
    present = []
    for sandbox in rows:
        config = configs.get(sandbox.project.owner_id)
        if config is None:
            continue
        try:
            client_for(config).get("StatefulSet", sandbox.k8s_name)
        except KubeNotFound:
            changed = change_status(
                sandbox,
                ResourceStatus.CREATING,
                actor=RECONCILER,
                reason="drift",
                message="StatefulSet missing on the cluster; re-creating it.",
            )
            drifted += int(changed)
            continue
        except KubeError as exc:
            logger.info("drift check skipped for %s: %s", sandbox.pk, exc.__class__.__name__)
            continue
        present.append(sandbox.pk)
    # One write for the whole batch: these were seen as they should be.
    Sandbox.objects.filter(pk__in=present, status=ResourceStatus.RUNNING).update(
        last_observed_at=timezone.now()
    )
    return drifted


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
