"""Why a pod that was running is not ready now, and why a database cluster failed. Pure functions.

Used by the verification sweep (reconcile/verify.py) on RUNNING resources. The STARTING phase has its
own classification (`reconcile/sandbox.py::diagnose_pod`); both read the same container states, but
this one never lists events: it works from the objects the sweep already listed, so a round costs no
request per resource.

What is shown: the Kubernetes reason (a CamelCase token, checked to be one), restart counts and
exit codes (numbers), and for an unschedulable pod the scheduler's message, shortened, as pod
diagnosis does.
"""

import re
from collections.abc import Mapping
from typing import Any

from reconcile.kube.errors import shorten

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# Waiting reasons that mean a container will not come back on its own.
WAITING_FAILURES = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# Database cluster phases that are failures (KubeBlocks v1 and v1alpha1 alike).
CLUSTER_FAILED_PHASES = frozenset({"Failed", "Abnormal"})


def token(value: object, default: str = "") -> str:
    """A Kubernetes reason as shown: a CamelCase word, or `default` when it is anything else."""
    text = str(value or "")
    return text if _TOKEN.fullmatch(text) else default


def name(value: object, default: str = "") -> str:
    """A Kubernetes object or container name as shown (a DNS label), or `default`."""
    text = str(value or "")
    return text if _NAME.fullmatch(text) else default


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _container_problem(cs: Mapping[str, Any]) -> str | None:
    cname = name(cs.get("name"), "?")
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    restarts = _int(cs.get("restartCount")) or 0
    last_reason = token(last.get("reason"))
    last_code = _int(last.get("exitCode"))
    reason = token(waiting.get("reason"))
    detail = f"container {cname}"
    if restarts:
        detail += f" restarted {restarts} time{'s' if restarts != 1 else ''}"
    if last_reason or last_code is not None:
        detail += f", last exit {last_reason or 'Error'}" + (
            f" (code {last_code})" if last_code is not None else ""
        )
    if reason in WAITING_FAILURES:
        # OOMKilled shows as CrashLoopBackOff with the kill as the last termination: say OOMKilled.
        if reason == "CrashLoopBackOff" and last_reason == "OOMKilled":
            reason = "OOMKilled"
        return f"{reason}: {detail}"
    if terminated:
        return f"{token(terminated.get('reason'), 'Terminated')}: {detail}"
    if last_reason == "OOMKilled" and not cs.get("ready"):
        return f"OOMKilled: {detail}"
    return None


def pod_problem(pod: Mapping[str, Any] | None) -> str | None:
    """Why a pod that should be serving is not ready ("Reason: detail"), None when it is ready."""
    if pod is None:
        return "PodMissing: the sandbox has no pod"
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating: the pod is being replaced"
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    main = status.get("containerStatuses") or []
    ready = status.get("phase") == "Running" and bool(main) and all(cs.get("ready") for cs in main)
    if ready:
        return None
    for cs in statuses:
        problem = _container_problem(cs)
        if problem:
            return problem
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = token(condition.get("reason"), "Unschedulable")
            return f"{reason}: {shorten(condition.get('message'), 200)}".rstrip(": ")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            return f"NotReady: {token(condition.get('reason'), 'ContainersNotReady')}"
    return f"NotReady: pod phase {token(status.get('phase'), 'unknown')}"


def restarts(pod: Mapping[str, Any] | None) -> int:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return sum(_int(cs.get("restartCount")) or 0 for cs in statuses)


def cluster_problem(cluster: Mapping[str, Any]) -> str | None:
    """Why a KubeBlocks cluster failed ("Phase: reason (component ...)"), None unless Failed/Abnormal.

    From the cluster's own status: its phase, the reason of its failing conditions, and the phase of
    each failing component. Condition messages are remote text beyond a reason token: left out.
    """
    status = cluster.get("status") or {}
    phase = token(status.get("phase"))
    if phase not in CLUSTER_FAILED_PHASES:
        return None
    reasons = []
    for condition in status.get("conditions") or []:
        if str(condition.get("status")) == "False":
            reason = token(condition.get("reason")) or token(condition.get("type"))
            if reason and reason not in reasons:
                reasons.append(reason)
    components = []
    for component, comp in sorted((status.get("components") or {}).items()):
        comp_phase = token((comp or {}).get("phase"))
        if comp_phase in CLUSTER_FAILED_PHASES:
            components.append(f"component {name(component, '?')} {comp_phase}")
    detail = ", ".join([*reasons, *components]) or "no reason given by the cluster"
    return f"Cluster {phase}: {detail}"
