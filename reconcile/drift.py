"""Drift and orphans (DESIGN §5): the slower sweep over stable rows and over the cluster.

- Drift of stable rows (missing or changed objects, pods no longer ready) is the verification
  sweep's: reconcile/verify.py.
- Objects labelled as Tenter's and a user's whose row no longer exists are orphans: recorded
  (OrphanObject: the admin's list, the `tenter_orphan_objects` metric) and in the log when first
  seen, and deleted once reported for ORPHAN_DELETE_AFTER_MINUTES (0 = report only). Celery beat runs
  the orphan sweep every 5 minutes (`reconcile.sweep_orphans`).
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from reconcile import manifests
from reconcile.kube.client import Kube
from reconcile.kube.errors import KubeConflict, KubeNotFound
from reconcile.runner import client_for
from sandboxes.models import Database, OrphanObject, Sandbox
from userconfig.models import UserConfig

logger = logging.getLogger(__name__)

# Every kind Tenter creates (a sandbox's PVC comes from its claim template, which carries our labels;
# a database's own PVCs and Secrets are KubeBlocks', deleted with its Cluster).
ORPHAN_KINDS: list[tuple[str, str | None]] = [
    ("StatefulSet", None),
    ("Service", None),
    ("Ingress", None),
    ("Secret", None),
    ("PersistentVolumeClaim", None),
    ("Cluster", "apps.kubeblocks.io/v1"),
    ("Cluster", "apps.kubeblocks.io/v1alpha1"),
]


def _resource_id(obj: dict[str, Any]) -> str | None:
    """The row id in an object's resource label (None when missing or not a row id)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(manifests.RESOURCE_LABEL)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _list_owned(client: Kube, selector: str) -> list[tuple[str, dict[str, Any]]]:
    """Every object of the kinds Tenter creates that matches `selector`, each once (by uid)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, api_version in ORPHAN_KINDS:
        try:
            items = client.list(kind, label_selector=selector, api_version=api_version)
        except KubeNotFound:  # e.g. no KubeBlocks (or not this version of it) on the cluster
            continue
        for obj in items:
            meta = obj.get("metadata") or {}
            found.setdefault(str(meta.get("uid") or f"{kind}/{meta.get('name')}"), (kind, obj))
    return list(found.values())


def find_orphans(config: UserConfig, now: datetime | None = None) -> list[tuple[str, str, bool]]:
    """(kind, name, deleted) for each object of this user with no row, in the user's namespace.

    Only objects labelled as Tenter's *and this user's* (the owner label) are looked at, so in a
    namespace shared by several users one user's sweep never touches another's objects; and a row of
    any owner still counts, so nothing a row claims is an orphan. The rows are read after the objects
    are listed: since a row is committed before its objects are created, an object being created is
    never an orphan. Each orphan is recorded (OrphanObject: the admin page and the metric) when first
    seen, and deleted once it has been reported for ORPHAN_DELETE_AFTER_MINUTES (0 = report only).
    """
    now = now or timezone.now()
    client = client_for(config)
    selector = f"{manifests.MANAGED_BY}={manifests.MANAGED_BY_VALUE},{manifests.OWNER_LABEL}={config.user_id}"
    objects = _list_owned(client, selector)
    ids = {rid for _, obj in objects if (rid := _resource_id(obj))}
    known = {
        str(pk)
        for model in (Sandbox, Database)
        for pk in model.objects.filter(pk__in=ids).values_list("pk", flat=True)
    }
    orphans = [(kind, obj) for kind, obj in objects if _resource_id(obj) not in known]
    uids = [str((obj.get("metadata") or {}).get("uid") or "") for _, obj in orphans]
    recorded = {
        o.uid: o for o in OrphanObject.objects.filter(owner_id=config.user_id, deleted_at=None, uid__in=uids)
    }
    new = []
    for (kind, obj), uid in zip(orphans, uids, strict=True):
        if uid not in recorded:
            meta = obj.get("metadata") or {}
            row = OrphanObject(
                owner_id=config.user_id,
                namespace=client.namespace,
                kind=kind,
                name=str(meta.get("name"))[:253],
                uid=uid[:64],
                resource_id=str(_resource_id(obj) or ""),
                first_seen_at=now,
                last_seen_at=now,
            )
            new.append(row)
            recorded[uid] = row
    OrphanObject.objects.bulk_create(new, ignore_conflicts=True)
    OrphanObject.objects.filter(owner_id=config.user_id, deleted_at=None, uid__in=uids).update(
        last_seen_at=now
    )
    # what was reported and is gone now (deleted by someone else): closed
    OrphanObject.objects.filter(owner_id=config.user_id, namespace=client.namespace, deleted_at=None).exclude(
        uid__in=uids
    ).update(deleted_at=now)
    grace = settings.ORPHAN_DELETE_AFTER_MINUTES
    found = []
    deleted = []
    for (kind, obj), uid in zip(orphans, uids, strict=True):
        meta = obj.get("metadata") or {}
        first_seen = recorded[uid].first_seen_at or now
        delete = bool(grace) and now - first_seen > timedelta(minutes=grace)
        if delete:
            api_version = obj.get("apiVersion") if kind == "Cluster" else None
            try:  # this very object: if the name was taken again meanwhile, the new one is left alone
                client.delete(kind, meta["name"], uid=meta.get("uid"), api_version=api_version)
            except KubeNotFound:
                pass
            except KubeConflict:
                delete = False
        if delete:
            deleted.append(uid)
        logger.warning(
            "orphan %s %s/%s%s", kind, client.namespace, meta.get("name"), " deleted" if delete else ""
        )
        found.append((kind, str(meta.get("name")), delete))
    if deleted:
        OrphanObject.objects.filter(owner_id=config.user_id, uid__in=deleted).update(deleted_at=now)
    return found
