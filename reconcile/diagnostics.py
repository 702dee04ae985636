"""Diagnostics of a project: what `kubectl describe` and `kubectl logs` would say, without kubectl.

A worker fetches them (`reconcile.diagnostics` task) and keeps them in the cache; the web request only
reads the cache and asks for a refresh when what it has is older than DIAGNOSTICS_FRESH_SECONDS. Each
object of the project (by its project label) with its state; for each pod its conditions, its
containers' states, restart counts and last termination; the recent Warning events about these
objects; and the last log lines of each container, with every secret value of the project (its
environment, the database password, the agent's keys) replaced by ••••.
"""

import contextlib
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core import kick as kicks
from core.text import redact
from projects.models import Environment, Project
from reconcile import health, manifests
from reconcile.kube.errors import KubeError, KubeNotFound, shorten
from reconcile.runner import client_for
from sandboxes.models import Database, Sandbox
from userconfig.models import ConfigKey, UserConfig
from userconfig.selectors import agent_env

TASK = "reconcile.diagnostics"
KINDS = ("StatefulSet", "Pod", "Service", "Ingress", "Secret", "PersistentVolumeClaim")
LOG_LINES = 50
EVENTS_SHOWN = 20


def cache_key(project_id: object) -> str:
    return f"tenter:diagnostics:{project_id}"


def pending_key(project_id: object) -> str:
    return f"tenter:diagnostics:{project_id}:pending"


def cached(project_id: object) -> dict[str, Any] | None:
    value = cache.get(cache_key(project_id))
    return value if isinstance(value, dict) else None


def _state(kind: str, obj: dict[str, Any]) -> str:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "StatefulSet":
        return f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)} ready"
    if kind == "Pod":
        problem = health.pod_problem(obj)
        return health.token(status.get("phase"), "Unknown") + (f" — {problem}" if problem else ", ready")
    if kind == "PersistentVolumeClaim":
        return health.token(status.get("phase"), "Unknown")
    if kind == "Cluster":
        return health.token(status.get("phase"), "Unknown")
    if kind == "Ingress":
        return f"host {((spec.get('rules') or [{}])[0]).get('host', '?')}"
    return "present"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    status = pod.get("status") or {}
    for init, statuses in (
        (True, status.get("initContainerStatuses")),
        (False, status.get("containerStatuses")),
    ):
        for cs in statuses or []:
            state = cs.get("state") or {}
            current = next(iter(state), "unknown")
            detail = state.get(current) or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            out.append(
                {
                    "name": str(cs.get("name")),
                    "init": init,
                    "ready": bool(cs.get("ready")),
                    "state": current,
                    "reason": health.token(detail.get("reason")),
                    "restart_count": int(cs.get("restartCount") or 0),
                    "last_termination_reason": health.token(last.get("reason")),
                    "last_exit_code": last.get("exitCode"),
                }
            )
    return out


def _secrets(project: Project) -> list[str]:
    values = [e.value for e in Environment.objects.filter(project=project)]
    values += list(agent_env(user_id=project.owner_id).values())
    values += [d.password for d in Database.objects.filter(project=project)]
    return [v for v in values if v]


def collect(project_id: Any) -> dict[str, Any]:
    """Fetch the project's diagnostics from its cluster (a worker's job) and cache them."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {}
    data: dict[str, Any] = {"fetched_at": time.time(), "objects": [], "pods": [], "events": [], "error": ""}
    config = UserConfig.objects.filter(user_id=project.owner_id, key=ConfigKey.KUBECONFIG).first()
    rows: list[Any] = [*Sandbox.objects.filter(project=project), *Database.objects.filter(project=project)]
    namespace = rows[0].k8s_namespace if rows else ""
    if config is None or not namespace:
        data["error"] = "No kubeconfig is stored, or the project has no resources." if config is None else ""
        _store(project.pk, data)
        return data
    secrets = _secrets(project)
    try:
        k = client_for(config).for_step(namespace, settings.RECONCILE_STEP_BUDGET_SECONDS * 2)
        selector = f"{manifests.PROJECT_LABEL}={project.pk}"
        listed = [(kind, obj) for kind in KINDS for obj in k.list(kind, label_selector=selector)]
        for db in rows:
            if isinstance(db, Database):
                with contextlib.suppress(KubeNotFound):
                    listed.append(("Cluster", k.get("Cluster", db.k8s_name, api_version=db.api_version)))
        names = set()
        for kind, obj in listed:
            name = str((obj.get("metadata") or {}).get("name"))
            names.add(name)
            data["objects"].append({"kind": kind, "name": name, "state": _state(kind, obj)})
        for kind, obj in listed:
            if kind != "Pod":
                continue
            name = str((obj.get("metadata") or {}).get("name"))
            conditions = [
                {
                    "type": health.token(c.get("type")),
                    "status": str(c.get("status")),
                    "reason": health.token(c.get("reason")),
                }
                for c in (obj.get("status") or {}).get("conditions") or []
            ]
            containers = _containers(obj)
            for container in containers:
                try:
                    text = k.logs(name, container=container["name"], tail=LOG_LINES)
                except KubeError as exc:
                    text = f"(no logs: {exc.message or exc.__class__.__name__})"
                container["log"] = redact(text, secrets)[-20000:]
            data["pods"].append({"name": name, "conditions": conditions, "containers": containers})
        warnings = [
            e
            for e in k.list("Event", field_selector="type=Warning")
            if (e.get("involvedObject") or {}).get("name") in names
        ]
        warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
        data["events"] = [
            {
                "object": "{kind}/{name}".format(
                    **{"kind": "", "name": "", **(e.get("involvedObject") or {})}
                ),
                "reason": health.token(e.get("reason")),
                "message": redact(shorten(e.get("message"), 300), secrets),
                "count": int(e.get("count") or 1),
                "last_seen": str(e.get("lastTimestamp") or e.get("eventTime") or ""),
            }
            for e in warnings[:EVENTS_SHOWN]
        ]
    except KubeError as exc:
        data["error"] = f"Could not read the cluster: {exc.message or exc.__class__.__name__}"
    _store(project.pk, data)
    return data


def for_display(project_id: object, *, refresh: bool = True) -> dict[str, Any]:
    """What the web shows: the cached diagnostics with their age, a refresh asked for (one at a time,
    to a worker) when they are older than DIAGNOSTICS_FRESH_SECONDS. Never reads the cluster."""
    data = cached(project_id)
    age = None if data is None else max(0.0, time.time() - float(data.get("fetched_at") or 0))
    stale = age is None or age > settings.DIAGNOSTICS_FRESH_SECONDS
    refreshing = bool(cache.get(pending_key(project_id)))
    if stale and refresh and not refreshing:
        if cache.add(pending_key(project_id), 1, timeout=settings.DIAGNOSTICS_FRESH_SECONDS):
            kicks.send(TASK, str(project_id))
        refreshing = True
    return {
        "available": data is not None,
        "age_seconds": None if age is None else round(age, 1),
        "refreshing": refreshing,
        "objects": (data or {}).get("objects", []),
        "pods": (data or {}).get("pods", []),
        "events": (data or {}).get("events", []),
        "error": (data or {}).get("error", ""),
    }


def _store(project_id: object, data: dict[str, Any]) -> None:
    cache.set(cache_key(project_id), data, timeout=settings.DIAGNOSTICS_KEEP_SECONDS)
    cache.delete(pending_key(project_id))
