"""One reconcile step for a sandbox: StatefulSet, Service, three Ingresses and the env Secret."""

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.quantities import bytes_of
from projects.models import Environment
from reconcile import manifests, names, pods
from reconcile.engine import Outcome, deadline_passed, describe_age, error_outcome
from reconcile.kube.client import Kube
from reconcile.kube.errors import KubeNotFound, shorten
from reconcile.specs import SandboxSpec
from sandboxes.models import ResourceStatus as S
from sandboxes.models import Sandbox
from userconfig.selectors import agent_env, agent_envs

logger = logging.getLogger(__name__)

FOREIGN = "name taken by an object Tenter does not manage"


def prepare(sandboxes: list[Sandbox]) -> None:
    """Load the env of a claimed batch's sandboxes in two queries, before their steps run (in threads
    that do not touch the database): `spec_for` uses it."""
    project_env: dict[Any, dict[str, str]] = {}
    for e in Environment.objects.filter(project_id__in={s.project_id for s in sandboxes}):
        project_env.setdefault(e.project_id, {})[e.key] = e.value
    agents = agent_envs(user_ids={s.project.owner_id for s in sandboxes})
    for sandbox in sandboxes:
        env = dict(project_env.get(sandbox.project_id, {}))
        env.update(agents.get(sandbox.project.owner_id, {}))
        sandbox.prepared_env = env


def _env(sandbox: Sandbox) -> dict[str, str]:
    if sandbox.prepared_env is not None:
        return sandbox.prepared_env
    project = sandbox.project
    env = {e.key: e.value for e in Environment.objects.filter(project_id=project.pk)}
    env.update(agent_env(user_id=project.owner_id))
    return env


def spec_for(sandbox: Sandbox, *, replicas: int = 1) -> SandboxSpec:
    project = sandbox.project
    env = _env(sandbox)
    return SandboxSpec(
        namespace=sandbox.k8s_namespace,
        name=sandbox.k8s_name,
        project_id=str(project.pk),
        project_slug=names.slugify_project(project.name),
        project_name=project.name,
        resource_id=str(sandbox.pk),
        owner_id=str(project.owner_id),
        image=sandbox.image,
        filebrowser_image=settings.FILEBROWSER_IMAGE,
        cpu_request=sandbox.cpu_request,
        cpu_limit=sandbox.cpu_limit,
        memory_request=sandbox.memory_request,
        memory_limit=sandbox.memory_limit,
        storage_size=sandbox.storage_size,
        domain=sandbox.ingress_domain,
        replicas=replicas,
        env=env,
        tls_secret_name=settings.INGRESS_TLS_SECRET,
        ingress_class=settings.INGRESS_CLASS,
        ingress_snippets=settings.INGRESS_SERVER_SNIPPET,
        ingress_annotations=settings.INGRESS_ANNOTATIONS,
        storage_class=settings.SANDBOX_STORAGE_CLASS,
        image_pull_secrets=settings.RUNTIME_IMAGE_PULL_SECRETS,
        pool_id=str(project.pool_id or ""),
        template_pool=sandbox.pool_label if sandbox.pinned_checksum else "",
        pinned_checksum=sandbox.pinned_checksum,
    )


class Foreign(Exception):
    pass


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


APPLIED = "tenter.dev/applied-hash"


def _with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp the manifest with a hash of itself, so converging an unchanged object costs no write."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    metadata = manifest["metadata"]
    annotations = {**metadata.get("annotations", {}), APPLIED: digest}
    return {**manifest, "metadata": {**metadata, "annotations": annotations}}


def ensure(
    k: Kube, manifest: dict[str, Any], resource_id: str, *, converge: bool, force: bool = False
) -> dict[str, Any]:
    """Create the object, or adopt ours and (when `converge`) bring it to the manifest. With `force`,
    replace it even when its applied-hash annotation matches (someone changed the spec and kept it)."""
    manifest = _with_hash(manifest)
    obj, how = k.apply(manifest)
    if how == "created":
        return obj
    if not manifests.owned_by(_labels(obj), resource_id):
        raise Foreign(f"{manifest['kind']} {manifest['metadata']['name']}: {FOREIGN}")
    current = ((obj.get("metadata") or {}).get("annotations") or {}).get(APPLIED)
    # Stop/start patch replicas directly, so the hash alone cannot tell whether replicas match.
    replicas_differ = (obj.get("spec") or {}).get("replicas") != (manifest.get("spec") or {}).get("replicas")
    stale = current != manifest["metadata"]["annotations"][APPLIED] or replicas_differ
    if converge and (stale or force):
        metadata = {**manifest["metadata"], "resourceVersion": obj["metadata"]["resourceVersion"]}
        sent = {**manifest, "metadata": metadata}
        if manifest["kind"] == "StatefulSet":
            sent = _keeping_claim_templates(sent, obj)
        return k.replace(sent)
    return obj


def _claim_storage(sts: Mapping[str, Any]) -> str | None:
    templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    return _storage_request(templates[0]) if templates else None


def _keeping_claim_templates(manifest: dict[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """A StatefulSet's volumeClaimTemplates cannot change once created (the API server refuses with 422),
    so a replace keeps the ones it has: after a storage growth the template keeps the size the sandbox
    was created with (stale, and only used for a claim that does not exist yet) while the claim itself
    is grown (see grow_storage). The wanted size stays readable in the StatefulSet's annotations."""
    templates = (current.get("spec") or {}).get("volumeClaimTemplates")
    if templates is None:
        return manifest
    return {**manifest, "spec": {**manifest["spec"], "volumeClaimTemplates": templates}}


def grow_storage(k: Kube, sandbox: Sandbox, sts: Mapping[str, Any]) -> None:
    """Bring the sandbox's claim up to its storage size when a resize grew it. Only when the
    StatefulSet's claim template is smaller than the size (an existing StatefulSet, so one GET then);
    a claim that does not exist yet is left to the controller; storage never shrinks."""
    template = _claim_storage(sts)
    if template is None or bytes_of(template) >= bytes_of(sandbox.storage_size):
        return
    try:
        pvc = k.get("PersistentVolumeClaim", names.pvc_name(sandbox.k8s_name))
    except KubeNotFound:
        return
    requested = _storage_request(pvc)
    if requested is not None and bytes_of(requested) >= bytes_of(sandbox.storage_size):
        return
    patch = {"spec": {"resources": {"requests": {"storage": sandbox.storage_size}}}}
    k.patch("PersistentVolumeClaim", names.pvc_name(sandbox.k8s_name), patch, patch_type="merge")
    logger.info("sandbox %s: claim grown from %s to %s", sandbox.pk, requested, sandbox.storage_size)


def _storage_request(obj: Mapping[str, Any]) -> str | None:
    value = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return str(value) if value is not None else None


def apply_all(k: Kube, sandbox: Sandbox, *, replicas: int, converge: bool) -> None:
    spec = spec_for(sandbox, replicas=replicas)
    for manifest in manifests.sandbox_objects(spec):
        # The Secret and StatefulSet carry the configuration: always converge them.
        kind_converges = manifest["kind"] in ("Secret", "StatefulSet")
        obj = ensure(k, manifest, str(sandbox.pk), converge=converge and kind_converges)
        if manifest["kind"] == "StatefulSet" and converge:
            grow_storage(k, sandbox, obj)


# -- why the pod is not ready ----------------------------------------------------------------

# Container states that mean the pod will not become ready without a change: reported as the
# reason while the row waits for its deadline.
POD_FAILURE_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "ContainerCannotRun",
        "OOMKilled",
        "StartError",
    }
)
# Warning events worth showing when the pod (or the StatefulSet's pod creation) is stuck.
EVENT_FAILURE_REASONS = frozenset(
    {
        "FailedCreate",
        "FailedScheduling",
        "FailedMount",
        "FailedAttachVolume",
        "FailedCreatePodSandBox",
        "Failed",
        "InspectFailed",
        "ErrImageNeverPull",
        "BackOff",
    }
)

Events = Callable[[str], list[dict[str, Any]]]  # the Events about one object, by its name


def pod_failure(k: Kube, sts_name: str) -> str | None:
    """Why the sandbox pod is stuck (see `diagnose_pod`), read from the cluster."""
    try:
        pod = k.get("Pod", names.pod_name(sts_name))
    except KubeNotFound:
        pod = None
    return diagnose_pod(
        sts_name, pod, lambda name: k.list("Event", field_selector=f"involvedObject.name={name}")
    )


def _event_time(event: Mapping[str, Any]) -> str:
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _latest_warning(
    events: list[dict[str, Any]], reasons: frozenset[str] | None = None, uid: str | None = None
) -> dict[str, Any] | None:
    """The latest Warning event among `events` (about this very incarnation when `uid` is given)."""
    warnings = [
        e
        for e in events
        if e.get("type") == "Warning"
        and (reasons is None or e.get("reason") in reasons)
        and (not uid or (e.get("involvedObject") or {}).get("uid") in (None, "", uid))
    ]
    return max(warnings, key=_event_time) if warnings else None


def diagnose_pod(sts_name: str, pod: Mapping[str, Any] | None, events: Events) -> str | None:
    """Why the sandbox pod is stuck, as "Reason: message", or None when nothing is wrong (or no pod).

    Looks at container states (ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError...),
    an unschedulable pod, and the latest matching Warning event. When the pod does not exist (`pod`
    None), a FailedCreate warning on the StatefulSet (quota, admission) is the failure. `events` is
    only called when the answer depends on events. This describes the present; giving up is the
    deadline's job.
    """
    pod_name = names.pod_name(sts_name)
    if pod is None:
        event = _latest_warning(events(sts_name), frozenset({"FailedCreate"}))
        if event:
            return f"FailedCreate: {shorten(event.get('message'), 400)}"
        return None
    pod_uid = (pod.get("metadata") or {}).get("uid")
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        reason = waiting.get("reason") or ""
        message = waiting.get("message") or ""
        if reason not in POD_FAILURE_REASONS and terminated.get("reason") in POD_FAILURE_REASONS:
            reason, message = terminated.get("reason"), terminated.get("message") or ""
        if reason in POD_FAILURE_REASONS:
            if not message:
                event = _latest_warning(events(pod_name), uid=pod_uid)
                message = (event or {}).get("message") or ""
            if reason == "CrashLoopBackOff":
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last:
                    message = (
                        f"{message} (container {cs.get('name')} last exited with "
                        f"{last.get('reason') or 'an error'}, code {last.get('exitCode')})"
                    ).strip()
            return f"{reason}: {shorten(message, 400)}".rstrip(": ").rstrip()
    if status.get("phase") in ("Running", "Succeeded") and all(cs.get("ready") for cs in statuses):
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return f"{reason}: {shorten(condition.get('message'), 400)}"
    event = _latest_warning(events(pod_name), EVENT_FAILURE_REASONS, uid=pod_uid)
    if event:
        return f"{event.get('reason')}: {shorten(event.get('message'), 400)}"
    return None


def _waiting(k: Kube, sandbox: Sandbox, what: str) -> Outcome:
    failure = pod_failure(k, sandbox.k8s_name)
    message = f"{failure}" if failure else what
    return Outcome(message=message, retry_in=settings.RECONCILE_POLL_SECONDS)


def step(sandbox: Sandbox, k: Kube) -> Outcome:
    age = deadline_passed(sandbox)
    if age is not None and sandbox.status != S.TERMINATING:
        detail = sandbox.status_reason or f"still {sandbox.status}"
        return error_outcome(f"not ready after {describe_age(age)}: {detail}", reason="deadline")
    try:
        return _STEPS[sandbox.status](sandbox, k)
    except Foreign as exc:
        return error_outcome(str(exc), reason="name_taken")


def _create(sandbox: Sandbox, k: Kube) -> Outcome:
    apply_all(k, sandbox, replicas=1, converge=True)
    return Outcome(
        status=S.STARTING,
        reason="created",
        message="Objects created; waiting for the pod.",
        fields={"observed_generation": sandbox.generation},
    )


def _unpin(sandbox: Sandbox) -> dict[str, str]:
    """A bound warm sandbox whose pod is about to be (re)created anyway takes its project's own pod
    template (the pool's one is only kept so that binding does not restart the pod)."""
    if sandbox.pinned_checksum and not sandbox.project.pool_id:
        sandbox.pinned_checksum = ""
        return {"pinned_checksum": ""}
    return {}


def _start(sandbox: Sandbox, k: Kube) -> Outcome:
    try:
        sts = k.get("StatefulSet", sandbox.k8s_name)
    except KubeNotFound:
        unpinned = _unpin(sandbox)
        apply_all(k, sandbox, replicas=1, converge=True)
        return Outcome(
            message="StatefulSet was missing; re-created.",
            fields={"observed_generation": sandbox.generation, **unpinned},
        )
    if sandbox.generation > sandbox.observed_generation or (sts.get("spec") or {}).get("replicas") != 1:
        unpinned = _unpin(sandbox)
        apply_all(k, sandbox, replicas=1, converge=True)
        return Outcome(
            message="Configuration applied; waiting for the pod.",
            fields={"observed_generation": sandbox.generation, **unpinned},
        )
    if manifests.statefulset_ready(sts):
        return Outcome(
            status=S.RUNNING,
            reason="ready",
            message="",
            fields={"last_observed_at": timezone.now(), "last_error": ""},
        )
    failed = _failed_fast(k, sandbox)
    if failed is not None:
        return failed
    return _waiting(k, sandbox, "Waiting for the pod to become ready.")


def _failed_fast(k: Kube, sandbox: Sandbox) -> Outcome | None:
    """ERROR now, not at the STARTING deadline, when the pod has a problem that will not fix itself and
    the sandbox has been starting for POD_FAILURE_GRACE_SECONDS (time waiting for a kubeconfig not
    counted). The message is our own plain words plus the Kubernetes reason, never remote text."""
    starting_for = (timezone.now() - sandbox.status_changed_at - sandbox.paused).total_seconds()
    if starting_for < settings.POD_FAILURE_GRACE_SECONDS:
        return None
    try:
        pod = k.get("Pod", names.pod_name(sandbox.k8s_name))
    except KubeNotFound:
        return None
    problem = pods.classify(pod, crash_restarts=settings.POD_CRASH_RESTARTS)
    if problem is None or not problem.permanent:
        return None
    return error_outcome(f"{problem.hint(sandbox.image)} (Kubernetes: {problem.reason})", reason=problem.code)


def _update(sandbox: Sandbox, k: Kube) -> Outcome:
    if sandbox.binding:  # a warm pool sandbox a create just claimed (reconcile/warm.py)
        from reconcile import warm

        return warm.bind(sandbox, k)
    # A bound warm sandbox keeps the pool's pod template until its configuration changes: then it rolls
    # into its project's own template, as any sandbox does.
    unpinned = _unpin(sandbox)
    apply_all(k, sandbox, replicas=1, converge=True)
    # A StatefulSet (OrderedReady) never replaces a pod that is failing, so a fix to the configuration
    # would never reach it: delete the broken pod and let the controller create it from the new template.
    if pod_failure(k, sandbox.k8s_name):
        with contextlib.suppress(KubeNotFound):
            k.delete("Pod", names.pod_name(sandbox.k8s_name))
    return Outcome(
        status=S.STARTING,
        reason="updated",
        message="New configuration applied; the pod is rolling.",
        fields={"observed_generation": sandbox.generation, **unpinned},
    )


def _stop(sandbox: Sandbox, k: Kube) -> Outcome:
    try:
        sts = k.get("StatefulSet", sandbox.k8s_name)
    except KubeNotFound:
        return Outcome(status=S.STOPPED, reason="stopped", message="StatefulSet not found; nothing to stop.")
    if (sts.get("spec") or {}).get("replicas") != 0:
        k.patch("StatefulSet", sandbox.k8s_name, {"spec": {"replicas": 0}}, patch_type="merge")
        return Outcome(message="Scaling to zero.", retry_in=settings.RECONCILE_POLL_SECONDS)
    status = sts.get("status") or {}
    if (status.get("replicas") or 0) == 0 and (status.get("readyReplicas") or 0) == 0:
        return Outcome(
            status=S.STOPPED, reason="stopped", message="", fields={"last_observed_at": timezone.now()}
        )
    return Outcome(message="Waiting for the pod to stop.", retry_in=settings.RECONCILE_POLL_SECONDS)


def _terminate(sandbox: Sandbox, k: Kube) -> Outcome:
    remaining = []
    for kind, name in manifests.sandbox_object_refs(sandbox.k8s_name):
        try:
            obj = k.get(kind, name)
        except KubeNotFound:
            continue
        if not manifests.owned_by(_labels(obj), str(sandbox.pk)) and kind != "PersistentVolumeClaim":
            continue  # never delete what is not ours
        remaining.append(f"{kind}/{name}")
        try:
            k.delete(kind, name)
        except KubeNotFound:
            remaining.pop()
    if remaining:
        return Outcome(message=f"Deleting {', '.join(remaining)}.", retry_in=settings.RECONCILE_POLL_SECONDS)
    return Outcome(status=S.TERMINATED, reason="deleted", message="All objects deleted.")


_STEPS: dict[str, Callable[[Sandbox, Kube], Outcome]] = {
    S.CREATING: _create,
    S.STARTING: _start,
    S.UPDATING: _update,
    S.STOPPING: _stop,
    S.TERMINATING: _terminate,
}
