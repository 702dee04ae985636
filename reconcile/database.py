"""One reconcile step for a database: a KubeBlocks PostgreSQL Cluster and its credentials."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.audit import RECONCILER
from projects.services import set_system_variable
from reconcile import health, manifests, names
from reconcile.engine import Outcome, deadline_passed, describe_age, error_outcome
from reconcile.kube.client import Kube
from reconcile.kube.errors import KubeNotFound
from reconcile.sandbox import FOREIGN
from reconcile.specs import DatabaseSpec
from sandboxes.models import Database
from sandboxes.models import ResourceStatus as S


def spec_for(database: Database, *, stopped: bool = False) -> DatabaseSpec:
    project = database.project
    return DatabaseSpec(
        namespace=database.k8s_namespace,
        name=database.k8s_name,
        project_id=str(project.pk),
        project_slug=names.slugify_project(project.name),
        resource_id=str(database.pk),
        owner_id=str(project.owner_id),
        api_version=database.api_version,
        cpu_request=database.cpu_request,
        cpu_limit=database.cpu_limit,
        memory_request=database.memory_request,
        memory_limit=database.memory_limit,
        storage_size=database.storage_size,
        storage_class=settings.DATABASE_STORAGE_CLASS,
        stopped=stopped,
    )


def _phase(cluster: dict[str, Any]) -> str:
    return str((cluster.get("status") or {}).get("phase") or "")


def stopped_flag(cluster: dict[str, Any]) -> bool:
    components = (cluster.get("spec") or {}).get("componentSpecs") or [{}]
    return bool(components[0].get("stop"))


def _get_cluster(k: Kube, database: Database) -> dict[str, Any] | None:
    try:
        return k.get("Cluster", database.k8s_name, api_version=database.api_version)
    except KubeNotFound:
        return None


def set_stop(k: Kube, database: Database, stopped: bool) -> None:
    body = manifests.database_stop_patch(spec_for(database, stopped=stopped), stopped)
    k.patch("Cluster", database.k8s_name, body, patch_type="json", api_version=database.api_version)


def step(database: Database, k: Kube) -> Outcome:
    age = deadline_passed(database)
    if age is not None and database.status != S.TERMINATING:
        detail = database.status_reason or f"still {database.status}"
        return error_outcome(f"not ready after {describe_age(age)}: {detail}", reason="deadline")
    return _STEPS[database.status](database, k)


def _create(database: Database, k: Kube) -> Outcome:
    manifest = manifests.database_cluster(spec_for(database))
    obj, how = k.apply(manifest)
    if how != "created" and not manifests.owned_by(
        (obj.get("metadata") or {}).get("labels") or {}, str(database.pk)
    ):
        return error_outcome(f"Cluster {database.k8s_name}: {FOREIGN}", reason="name_taken")
    return Outcome(
        status=S.STARTING,
        reason="created",
        message="Cluster created; waiting for it to run.",
        fields={"observed_generation": database.generation},
    )


def _start(database: Database, k: Kube) -> Outcome:
    cluster = _get_cluster(k, database)
    if cluster is None:
        return (
            _create(database, k)
            if database.observed_generation == 0
            else Outcome(status=S.CREATING, reason="drift", message="Cluster was missing; re-creating it.")
        )
    if stopped_flag(cluster):
        set_stop(k, database, False)
        return Outcome(message="Starting the cluster.", retry_in=settings.RECONCILE_POLL_SECONDS)
    problem = health.cluster_problem(cluster)
    if problem:  # Failed / Abnormal: no deadline to wait for, the cluster said why
        return error_outcome(problem, reason="cluster_failed")
    phase = _phase(cluster)
    if phase != "Running":
        return Outcome(
            message=f"Cluster phase {phase or 'unknown'}.", retry_in=settings.RECONCILE_POLL_SECONDS
        )
    try:
        secret = k.get("Secret", names.db_account_secret(database.k8s_name))
    except KubeNotFound:
        return Outcome(message="Waiting for the account secret.", retry_in=settings.RECONCILE_POLL_SECONDS)
    connection = manifests.database_connection(
        database.k8s_name, database.k8s_namespace, secret, database.database_name or "postgres"
    )
    if connection is None:
        return Outcome(message="Waiting for the account secret.", retry_in=settings.RECONCILE_POLL_SECONDS)
    # The sandbox gets DATABASE_URL (or the name chosen) and rolls as the database becomes RUNNING.
    set_system_variable(
        project=database.project, key=database.url_env_key, value=connection["url"], actor=RECONCILER
    )
    return Outcome(
        status=S.RUNNING,
        reason="ready",
        message="",
        fields={
            "host": connection["host"],
            "port": connection["port"],
            "username": connection["username"],
            "password": connection["password"],
            "last_observed_at": timezone.now(),
            "last_error": "",
        },
    )


def _stop(database: Database, k: Kube) -> Outcome:
    cluster = _get_cluster(k, database)
    if cluster is None:
        return Outcome(status=S.STOPPED, reason="stopped", message="Cluster not found; nothing to stop.")
    if not stopped_flag(cluster):
        set_stop(k, database, True)
        return Outcome(message="Stopping the cluster.", retry_in=settings.RECONCILE_POLL_SECONDS)
    if _phase(cluster) == "Stopped":
        return Outcome(status=S.STOPPED, reason="stopped", message="")
    return Outcome(
        message=f"Cluster phase {_phase(cluster) or 'unknown'}.", retry_in=settings.RECONCILE_POLL_SECONDS
    )


def _terminate(database: Database, k: Kube) -> Outcome:
    cluster = _get_cluster(k, database)
    if cluster is None:
        return Outcome(status=S.TERMINATED, reason="deleted", message="Cluster deleted.")
    if not manifests.owned_by((cluster.get("metadata") or {}).get("labels") or {}, str(database.pk)):
        return Outcome(
            status=S.TERMINATED,
            reason="deleted",
            message=f"Cluster {database.k8s_name} is not ours; left alone.",
        )
    if not (cluster.get("metadata") or {}).get("deletionTimestamp"):
        try:
            k.delete("Cluster", database.k8s_name, api_version=database.api_version)
        except KubeNotFound:
            return Outcome(status=S.TERMINATED, reason="deleted", message="Cluster deleted.")
    return Outcome(message="Waiting for the cluster to be deleted.", retry_in=settings.RECONCILE_POLL_SECONDS)


_STEPS: dict[str, Callable[[Database, Kube], Outcome]] = {
    S.CREATING: _create,
    S.STARTING: _start,
    S.UPDATING: _start,
    S.STOPPING: _stop,
    S.TERMINATING: _terminate,
}
