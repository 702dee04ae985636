"""Project status aggregation and the allowed project actions (DESIGN §4). Pure functions."""

from collections.abc import Iterable

from projects.models import ProjectStatus as P
from sandboxes.models import BLOCKING
from sandboxes.models import ResourceStatus as S

START_FROM = frozenset({P.STOPPED, P.PARTIAL, P.STOPPING, P.ERROR})
STOP_FROM = frozenset({P.RUNNING, P.STARTING, P.PARTIAL, P.ERROR})
NO_DELETE_FROM = frozenset({P.TERMINATING, P.TERMINATED})


def aggregate(statuses: Iterable[str]) -> str:
    """The project's status from its resources' statuses, in the documented priority order.

    An empty list means every resource is gone: TERMINATED (the caller deletes the project).
    """
    found = list(statuses)
    distinct = set(found)
    if not found:
        return P.TERMINATED
    if S.ERROR in distinct:
        return P.ERROR
    if S.CREATING in distinct:
        return P.CREATING
    if S.UPDATING in distinct:
        return P.UPDATING
    if len(distinct) == 1:
        return P(found[0])
    if distinct <= {S.RUNNING, S.STARTING}:
        return P.STARTING
    if distinct <= {S.STOPPED, S.STOPPING}:
        return P.STOPPING
    if distinct <= {S.TERMINATED, S.TERMINATING}:
        return P.TERMINATING
    return P.PARTIAL


def _blocked(action: str, resource_statuses: Iterable[str]) -> str | None:
    blocking = sorted(set(resource_statuses) & BLOCKING)
    if blocking:
        return (
            f"Cannot {action} the project while some resources are {', '.join(blocking)}; "
            "wait for them to settle."
        )
    return None


def start_refusal(project_status: str, resource_statuses: Iterable[str]) -> str | None:
    """None when start is allowed, otherwise the reason it is refused."""
    if project_status not in START_FROM:
        return f"Cannot start a project that is {project_status}."
    return _blocked("start", resource_statuses)


def stop_refusal(project_status: str, resource_statuses: Iterable[str]) -> str | None:
    if project_status not in STOP_FROM:
        return f"Cannot stop a project that is {project_status}."
    return _blocked("stop", resource_statuses)


def delete_refusal(project_status: str) -> str | None:
    if project_status in NO_DELETE_FROM:
        return "The project is already being deleted."
    return None


def allowed_actions(project_status: str, resource_statuses: Iterable[str]) -> list[str]:
    statuses = list(resource_statuses)
    actions = []
    if start_refusal(project_status, statuses) is None:
        actions.append("start")
    if stop_refusal(project_status, statuses) is None:
        actions.append("stop")
    if delete_refusal(project_status) is None:
        actions.append("delete")
    if S.ERROR in statuses:
        actions.append("retry")
    return actions


# --- the words the dashboard uses for reason codes and actors --------------------------------------

# Event reason codes (ResourceEvent.reason) in words, for the timeline.
REASON_WORDS = {
    "created": "created",
    "ready": "ready",
    "start": "start requested",
    "stop": "stop requested",
    "stopped": "stopped",
    "delete": "delete requested",
    "deleted": "deleted",
    "retry": "retry requested",
    "updated": "new configuration applied",
    "config_changed": "configuration changed",
    "env_kept": "environment kept",
    "resized": "resized",
    "idle": "stopped when idle",
    "drift": "repaired in the cluster",
    "deadline": "took too long",
    "name_taken": "name taken in the cluster",
    "kubeconfig": "kubeconfig unusable",
    "forbidden": "not allowed by the cluster",
    "rejected": "refused by the cluster",
    "image_pull": "image cannot be pulled",
    "invalid_image": "invalid image name",
    "config_error": "container cannot be configured",
    "crash_loop": "keeps crashing",
}
ACTOR_WORDS = {"reconciler": "Tenter", "admin": "an operator", "system": "Tenter"}


def reason_words(reason: str) -> str:
    return REASON_WORDS.get(reason, reason.replace("_", " "))


# What to do about an ERROR, by the reason it failed with: (the one action that fits, what to do).
RECOMMENDATIONS: dict[str, tuple[str, str]] = {
    "image_pull": (
        "retry",
        "Whoever runs Tenter sets the sandbox image (RUNTIME_IMAGE): ask them to fix it or make the "
        "registry reachable from your cluster, then Retry.",
    ),
    "invalid_image": (
        "retry",
        "Whoever runs Tenter sets the sandbox image (RUNTIME_IMAGE): ask them to fix it, then Retry.",
    ),
    "config_error": ("retry", "Check the project's environment variables, then Retry."),
    "crash_loop": (
        "retry",
        "Check the project's environment variables and your agent settings (Settings), then Retry.",
    ),
    "kubeconfig": ("settings", "Fix your kubeconfig in Settings, then Retry."),
    "forbidden": (
        "settings",
        "Give the kubeconfig's account the permissions it needs (see Settings), then Retry.",
    ),
    "rejected": (
        "retry",
        "The cluster refused the request; Retry, and if it fails again ask your cluster's admin.",
    ),
    "name_taken": (
        "delete",
        "Objects with this sandbox's names exist in the namespace and are not Tenter's. Remove them from "
        "the cluster and Retry, or Delete this project.",
    ),
    "deadline": ("retry", "It may have been a slow cluster: Retry."),
}
DEFAULT_RECOMMENDATION = ("retry", "Retry resumes from the step that failed.")


def recommendation(reason: str) -> tuple[str, str]:
    """(action, advice) for a resource that failed with `reason`: action is retry, settings or delete."""
    return RECOMMENDATIONS.get(reason, DEFAULT_RECOMMENDATION)
