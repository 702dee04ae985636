"""Continuous verification: stable sandboxes and databases re-checked against the cluster.

A round takes the least recently verified RUNNING and STOPPED rows (a bounded batch), groups them by
owner and namespace, and lists each group's objects by the owner's label: one LIST per kind per
group (StatefulSet, Service, Ingress, Secret, Pod; Cluster per KubeBlocks API version in use), never
a GET per row. Each row is then compared in memory with what was listed:

- every object present and ours (resource label);
- unchanged since the baseline the sweep took (the applied-hash annotation together with the
  object's `generation` for StatefulSets and Ingresses, `resourceVersion` for Secrets and Services:
  the API server bumps them on any change of the spec or data);
- replicas 1 for RUNNING and 0 for STOPPED; for a database, its cluster's stop flag and phase;
- a RUNNING sandbox's pod ready (otherwise the sandbox is shown degraded, with the pod's reason).

What is missing or changed is re-applied under a reconcile lease (so a worker or a user action in
between wins) and recorded on the timeline as "drift". A database cluster in Failed / Abnormal
goes to ERROR with the cluster's reason. Healthy rows cost nothing beyond the LISTs of their group
and one UPDATE of `last_observed_at` for the whole batch: SQL and Kubernetes requests per round are
constant in the number of healthy rows, and only changed rows cost more.
"""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from core.audit import RECONCILER
from projects.transitions import add_event, change_status
from reconcile import database as database_steps
from reconcile import health, manifests, names
from reconcile import sandbox as sandbox_steps
from reconcile.kube.client import Kube
from reconcile.kube.errors import KubeError
from reconcile.runner import client_for
from sandboxes.models import STABLE, Database, Resource, ResourceStatus, Sandbox
from userconfig.models import CheckStatus, ConfigKey, UserConfig

logger = logging.getLogger(__name__)

S = ResourceStatus
SANDBOX_KINDS = ("StatefulSet", "Service", "Ingress", "Secret", "Pod")
BY_GENERATION = frozenset({"StatefulSet", "Ingress"})

Listed = dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> object


@dataclass
class Round:
    """What one round saw and did (for the task's log line, the benchmark and the tests)."""

    checked: int = 0
    drifted: list[str] = field(default_factory=list)
    degraded: int = 0
    recovered: int = 0
    failed: int = 0
    skipped: int = 0


def fingerprint(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    applied = (meta.get("annotations") or {}).get(sandbox_steps.APPLIED, "")
    marker = (
        f"g{meta.get('generation')}"
        if obj.get("kind") in BY_GENERATION
        else f"r{meta.get('resourceVersion')}"
    )
    return f"{applied}:{marker}"


def baseline_key(row: Resource) -> str:
    return f"{row.status}:{row.generation}:{row.status_changed_at.isoformat()}"


def _stable(model: type[Resource], batch: int) -> list[Resource]:
    now = timezone.now()
    return list(
        model._default_manager.select_related("project")  # type: ignore[misc]  # every concrete one has it
        .filter(status__in=STABLE)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .order_by(F("last_observed_at").asc(nulls_first=True))[:batch]
    )


def _list_group(k: Kube, owner_id: int, sandboxes: bool, api_versions: set[str]) -> Listed:
    selector = f"{manifests.OWNER_LABEL}={owner_id}"
    listed: Listed = {}
    kinds = SANDBOX_KINDS if sandboxes else ()
    for kind in kinds:
        for obj in k.list(kind, label_selector=selector):
            listed[(kind, str((obj.get("metadata") or {}).get("name")))] = obj
    for api_version in sorted(api_versions):
        for obj in k.list("Cluster", label_selector=selector, api_version=api_version):
            listed[("Cluster", str((obj.get("metadata") or {}).get("name")))] = obj
    return listed


def verify_round(batch: int | None = None) -> Round:
    """One round over the least recently verified stable rows (see the module docstring)."""
    batch = batch or settings.VERIFY_BATCH_SIZE
    result = Round()
    sandboxes = _stable(Sandbox, batch)
    databases = _stable(Database, batch)
    rows: list[Resource] = [*sandboxes, *databases]
    owners = {row.project.owner_id for row in rows}  # type: ignore[attr-defined]
    configs = {
        c.user_id: c
        for c in UserConfig.objects.filter(
            user_id__in=owners, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK
        )
    }
    groups: dict[tuple[int, str], list[Resource]] = defaultdict(list)
    for row in rows:
        groups[(row.project.owner_id, row.k8s_namespace)].append(row)  # type: ignore[attr-defined]
    seen: dict[type[Resource], list[Any]] = {Sandbox: [], Database: []}
    baselines: list[Resource] = []
    for (owner_id, namespace), group in groups.items():
        config = configs.get(owner_id)
        usable = [r for r in group if config and (not r.k8s_server or r.k8s_server == config.server_host)]
        result.skipped += len(group) - len(usable)
        if not usable or config is None:
            continue
        k = client_for(config).for_step(namespace, settings.RECONCILE_STEP_BUDGET_SECONDS)
        try:
            listed = _list_group(
                k,
                owner_id,
                any(isinstance(r, Sandbox) for r in usable),
                {r.api_version for r in usable if isinstance(r, Database)},
            )
        except KubeError as exc:
            logger.info("verification skipped for user %s: %s", owner_id, exc.__class__.__name__)
            result.skipped += len(usable)
            continue
        for row in usable:
            try:
                if isinstance(row, Sandbox):
                    ok = _check_sandbox(row, k, listed, result)
                else:
                    assert isinstance(row, Database)
                    ok = _check_database(row, k, listed, result)
            except KubeError as exc:
                logger.info("verification of %s failed: %s", row.pk, exc.__class__.__name__)
                continue
            result.checked += 1
            if ok:
                seen[type(row)].append(row.pk)
                if row.observed_objects.get("key") != baseline_key(row):
                    row.observed_objects = _baseline(row, listed)
                    baselines.append(row)
    now = timezone.now()
    for model, pks in seen.items():
        if pks:  # one write for the whole batch: these were seen as they should be
            model._default_manager.filter(pk__in=pks, status__in=STABLE).update(last_observed_at=now)
    sandbox_baselines = [r for r in baselines if isinstance(r, Sandbox)]
    database_baselines = [r for r in baselines if isinstance(r, Database)]
    if sandbox_baselines:
        Sandbox.objects.bulk_update(sandbox_baselines, ["observed_objects"])
    if database_baselines:
        Database.objects.bulk_update(database_baselines, ["observed_objects"])
    return result


def _expected(row: Resource) -> list[tuple[str, str]]:
    if isinstance(row, Database):
        return [("Cluster", row.k8s_name)]
    name = row.k8s_name
    # a warm pool's idle sandbox has no Ingresses until it is bound to a project
    pool_member = getattr(row, "project", None) is not None and row.project.pool_id is not None  # type: ignore[attr-defined]
    return [
        ("Secret", names.env_secret_name(name)),
        ("Service", names.service_name(name)),
        ("StatefulSet", name),
        *([] if pool_member else [("Ingress", n) for n in names.ingress_names(name)]),
    ]


def _baseline(row: Resource, listed: Listed) -> dict[str, Any]:
    objects = {
        f"{kind}/{name}": fingerprint(listed[(kind, name)])
        for kind, name in _expected(row)
        if (kind, name) in listed
    }
    return {"key": baseline_key(row), "objects": objects}


def _differences(
    row: Resource, listed: Listed
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """(missing, changed, foreign) objects of a row."""
    missing, changed, foreign = [], [], []
    base = row.observed_objects if row.observed_objects.get("key") == baseline_key(row) else {}
    known = base.get("objects") or {}
    for kind, name in _expected(row):
        obj = listed.get((kind, name))
        if obj is None:
            missing.append((kind, name))
            continue
        if not manifests.owned_by((obj.get("metadata") or {}).get("labels") or {}, str(row.pk)):
            foreign.append(f"{kind} {name}")
            continue
        was = known.get(f"{kind}/{name}")
        if was is not None and was != fingerprint(obj):
            changed.append((kind, name))
    return missing, changed, foreign


# -- leases: repairs run under the reconciler's lease, so a worker or a user action in between wins ----


def _lease(row: Resource) -> uuid.UUID | None:
    now = timezone.now()
    token = uuid.uuid4()
    until = now + timedelta(seconds=float(settings.RECONCILE_LEASE_SECONDS))
    taken = (
        type(row)
        ._default_manager.filter(pk=row.pk, status=row.status, status_changed_at=row.status_changed_at)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .update(locked_until=until, lease_token=token)
    )
    if not taken:
        return None
    row.lease_token = token
    return token


def _release(row: Resource, token: uuid.UUID, **fields: Any) -> bool:
    return (
        type(row)
        ._default_manager.filter(pk=row.pk, lease_token=token)
        .update(locked_until=None, lease_token=None, **fields)
        > 0
    )


def _name_taken(row: Resource, message: str, result: Round, token: uuid.UUID | None = None) -> None:
    """An object in the row's place that is not ours: the row goes to ERROR (under a lease taken here
    unless the caller holds one); nothing in the cluster is touched."""
    token = token or _lease(row)
    if token:
        change_status(row, S.ERROR, actor=RECONCILER, reason="name_taken", message=message, lease_token=token)
        result.failed += 1


def _drift_repaired(row: Resource, token: uuid.UUID, message: str, result: Round, **fields: Any) -> None:
    """Release the repair's lease and, if it still held, put the repair on the timeline."""
    if not _release(row, token, **fields):
        return
    add_event(
        row,
        from_status=row.status,
        to_status=row.status,
        actor=RECONCILER,
        reason="drift",
        message=message,
        project_name=row.project.name,  # type: ignore[attr-defined]
    )
    logger.warning("drift on %s %s: %s", row.resource_kind, row.pk, message)
    result.drifted.append(str(row.pk))


def _describe(missing: list[tuple[str, str]], changed: list[tuple[str, str]], extra: list[str]) -> str:
    parts = [f"{kind} {name} was deleted; re-created" for kind, name in missing]
    parts += [f"{kind} {name} was changed; restored" for kind, name in changed]
    parts += extra
    return "Drift repaired: " + "; ".join(parts) + "."


# -- sandboxes ---------------------------------------------------------------------------------------


def _check_sandbox(row: Sandbox, k: Kube, listed: Listed, result: Round) -> bool:
    """True when the sandbox is as it should be (or only its health changed)."""
    missing, changed, foreign = _differences(row, listed)
    wanted = 1 if row.status == S.RUNNING else 0
    sts = listed.get(("StatefulSet", row.k8s_name))
    replicas = []
    if (
        sts is not None
        and (sts.get("spec") or {}).get("replicas") != wanted
        and ("StatefulSet", row.k8s_name) not in changed
    ):
        replicas.append(
            f"StatefulSet {row.k8s_name} had replicas {(sts.get('spec') or {}).get('replicas')}; "
            f"set to {wanted}"
        )
    if foreign:
        _name_taken(row, f"{', '.join(foreign)}: {sandbox_steps.FOREIGN}", result)
        return False
    if missing or changed or replicas:
        _repair_sandbox(row, k, listed, missing, changed, replicas, result)
        return False
    if row.status == S.RUNNING:
        _health(row, health.pod_problem(listed.get(("Pod", names.pod_name(row.k8s_name)))), result)
    return True


def _repair_sandbox(
    row: Sandbox,
    k: Kube,
    listed: Listed,
    missing: list[tuple[str, str]],
    changed: list[tuple[str, str]],
    replicas: list[str],
    result: Round,
) -> None:
    token = _lease(row)
    if token is None:
        return
    try:
        redo = set(missing) | set(changed)
        if replicas:
            redo.add(("StatefulSet", row.k8s_name))
        now_listed = dict(listed)
        spec = sandbox_steps.spec_for(row, replicas=1 if row.status == S.RUNNING else 0)
        for manifest in manifests.sandbox_objects(spec):
            key = (manifest["kind"], manifest["metadata"]["name"])
            if key in redo:
                now_listed[key] = sandbox_steps.ensure(k, manifest, str(row.pk), converge=True, force=True)
    except sandbox_steps.Foreign as exc:
        _name_taken(row, str(exc), result, token)
        return
    except KubeError:
        _release(row, token)
        raise
    _drift_repaired(
        row,
        token,
        _describe(missing, changed, replicas),
        result,
        observed_objects=_baseline(row, now_listed),
        last_observed_at=timezone.now(),
    )


def _health(row: Sandbox | Database, problem: str | None, result: Round) -> None:
    """Record a RUNNING row's health: degraded with the reason, or recovered. Writes only on change."""
    if (problem or "") == row.degraded_reason:
        return
    now = timezone.now()
    fields: dict[str, Any] = {"degraded_reason": problem or "", "updated_at": now}
    if problem and not row.degraded_reason:
        fields["degraded_since"] = now
    if not problem:
        fields["degraded_since"] = None
    written = (
        type(row)
        ._default_manager.filter(pk=row.pk, status=S.RUNNING, status_changed_at=row.status_changed_at)
        .update(**fields)
    )
    if not written:
        return
    was = row.degraded_reason
    row.degraded_reason = problem or ""
    if problem and not was:
        result.degraded += 1
        add_event(
            row,
            from_status=S.RUNNING,
            to_status=S.RUNNING,
            actor=RECONCILER,
            reason="degraded",
            message=problem,
            project_name=row.project.name,
        )
    elif not problem:
        result.recovered += 1
        add_event(
            row,
            from_status=S.RUNNING,
            to_status=S.RUNNING,
            actor=RECONCILER,
            reason="recovered",
            message=f"Ready again (was {was})",
            project_name=row.project.name,
        )
    # a changed reason while still degraded (e.g. the restart count) is written without an event


# -- databases ---------------------------------------------------------------------------------------


def _check_database(row: Database, k: Kube, listed: Listed, result: Round) -> bool:
    missing, _changed, foreign = _differences(row, listed)
    if foreign:
        _name_taken(row, f"Cluster {row.k8s_name}: {sandbox_steps.FOREIGN}", result)
        return False
    if missing:
        if row.status != S.RUNNING:
            return True  # a stopped database whose cluster is gone: starting it re-creates it
        token = _lease(row)
        if token and change_status(
            row,
            S.CREATING,
            actor=RECONCILER,
            reason="drift",
            message="Cluster missing on the cluster; re-creating it.",
            lease_token=token,
        ):
            result.drifted.append(str(row.pk))
        return False
    cluster = listed[("Cluster", row.k8s_name)]
    stopped = database_steps.stopped_flag(cluster)
    want_stopped = row.status == S.STOPPED
    if stopped != want_stopped:
        token = _lease(row)
        if token is None:
            return False
        try:
            database_steps.set_stop(k, row, want_stopped)
        except KubeError:
            _release(row, token)
            raise
        was, now = ("stopped", "started") if stopped else ("started", "stopped")
        message = f"Drift repaired: Cluster {row.k8s_name} was {was} outside Tenter; {now} again."
        _drift_repaired(row, token, message, result)
        return False
    if row.status != S.RUNNING:
        return True
    problem = health.cluster_problem(cluster)
    if problem:
        token = _lease(row)
        if token and change_status(
            row, S.ERROR, actor=RECONCILER, reason="cluster_failed", message=problem, lease_token=token
        ):
            result.failed += 1
        return False
    phase = health.token((cluster.get("status") or {}).get("phase"), "unknown")
    _health(row, None if phase == "Running" else f"ClusterNotRunning: cluster phase {phase}", result)
    return True
