"""Why a sandbox pod will not become ready, as pure functions over pod and event dicts (Kubernetes layer:
no Django, no app). Shared by the STARTING step (fast failure) and anything that explains a pod."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Container waiting reasons that never fix themselves: the image cannot be pulled, the image name
# is invalid, the container cannot be configured. CrashLoopBackOff joins them once it repeats.
PERMANENT_REASONS: dict[str, str] = {
    "ErrImagePull": "image_pull",
    "ImagePullBackOff": "image_pull",
    "ErrImageNeverPull": "image_pull",
    "InvalidImageName": "invalid_image",
    "CreateContainerConfigError": "config_error",
    "CreateContainerError": "config_error",
}
CRASH_LOOP = "CrashLoopBackOff"

# What each problem means, in plain words (shown to the user with the sandbox's ERROR).
HINTS: dict[str, str] = {
    "image_pull": (
        "The cluster cannot pull the sandbox image {image}: the name or tag may be wrong, the registry "
        "unreachable from the cluster, or it needs credentials."
    ),
    "invalid_image": "The sandbox image name {image} is not a valid image reference.",
    "config_error": (
        "Kubernetes could not set up the container: a Secret or ConfigMap it refers to, or a key in "
        "one, is missing."
    ),
    "crash_loop": "The sandbox starts and then crashes, again and again ({restarts} restarts so far).",
}


@dataclass(frozen=True)
class PodProblem:
    code: str  # image_pull, invalid_image, config_error, crash_loop
    reason: str  # the Kubernetes reason, e.g. ImagePullBackOff
    container: str
    restarts: int
    permanent: bool  # will not fix itself: waiting longer is pointless

    def hint(self, image: str) -> str:
        return HINTS[self.code].format(image=f'"{image}"', restarts=self.restarts)


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def classify(pod: Mapping[str, Any] | None, *, crash_restarts: int = 3) -> PodProblem | None:
    """The first container problem of `pod` that means it is not going to become ready, or None.

    A CrashLoopBackOff is `permanent` once the container restarted `crash_restarts` times; before that
    it may be a slow dependency. Pure: reads only the pod's container statuses.
    """
    if not pod:
        return None
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        restarts = int(cs.get("restartCount") or 0)
        name = str(cs.get("name") or "")
        if reason in PERMANENT_REASONS:
            return PodProblem(PERMANENT_REASONS[reason], reason, name, restarts, permanent=True)
        if reason == CRASH_LOOP:
            return PodProblem("crash_loop", reason, name, restarts, permanent=restarts >= crash_restarts)
    return None
