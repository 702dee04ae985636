"""Binding a warm pool sandbox to the project a create claimed it for (the UPDATING step of a sandbox
whose `binding` is set; see projects/services.py `project_create` and projects/pools.py).

The pod keeps running: its pod template is the pool's (pinned, see reconcile/manifests.py), so the
objects get the project's labels and Ingresses and the env Secret the project's env without the
StatefulSet's template changing. What the running pod needs of the project reaches it through files
on its home volume, written with exec: the env (sourced by the shell and the agent), the terminal's
token and FileBrowser's credentials (new ones: nothing of the pool's credentials stays valid).
"""

import base64
import contextlib
import logging
from typing import Any

from django.utils import timezone

from reconcile import manifests, names
from reconcile.engine import Outcome
from reconcile.kube.client import Kube, sh
from reconcile.kube.errors import KubeNotFound, KubePermanent
from reconcile.sandbox import apply_all, spec_for
from sandboxes.models import ResourceStatus as S
from sandboxes.models import Sandbox

logger = logging.getLogger(__name__)

BIND_EXEC_TIMEOUT = 20.0

# $1: the line .bashrc gets (BASHRC_LINE). stdin: the env file, base64 on one line (secrets never go
# in argv, which API servers may log); the terminal token and FileBrowser's "user:password" files are
# taken from it. Files are replaced whole (write then rename), readable by the sandbox's user only.
_BIND_SCRIPT = f"""set -eu
umask 077
D="$HOME/{manifests.WARM_DIR}"
mkdir -p "$D"
IFS= read -r B || true
printf %s "$B" | base64 -d > "$D/env.new"
(
  . "$D/env.new"
  printf %s "${{TTYD_ACCESS_TOKEN:-}}" > "$D/ttyd.new"
  printf '%s:%s' "${{FILE_BROWSER_USERNAME:-}}" "${{FILE_BROWSER_PASSWORD:-}}" > "$D/fb.new"
)
mv "$D/env.new" "$HOME/{manifests.WARM_ENV_FILE}"
mv "$D/ttyd.new" "$HOME/{manifests.WARM_TTYD_FILE}"
mv "$D/fb.new" "$HOME/{manifests.WARM_FILEBROWSER_FILE}"
grep -qsF "$1" "$HOME/.bashrc" || printf '\\n%s\\n' "$1" >> "$HOME/.bashrc"
"""


# Only a pool's pod reads the env file: a pod from the project's own template has the env itself.
BASHRC_LINE = (
    f'[ -n "${{{manifests.WARM_MARKER}:-}}" ] && [ -f "$HOME/{manifests.WARM_ENV_FILE}" ] '
    f'&& . "$HOME/{manifests.WARM_ENV_FILE}"'
)


def _relabel(k: Kube, kind: str, name: str, wanted: dict[str, str]) -> None:
    """Merge-patch an object's labels to the project's (the pool label removed)."""
    patch: dict[str, Any] = {"metadata": {"labels": {**wanted, manifests.POOL_LABEL: None}}}
    with contextlib.suppress(KubeNotFound):
        k.patch(kind, name, patch, patch_type="merge")


def bind(sandbox: Sandbox, k: Kube) -> Outcome:
    spec = spec_for(sandbox)
    pod = names.pod_name(sandbox.k8s_name)
    env = {**spec.env, "PROJECT_NAME": spec.project_name}
    payload = base64.b64encode(manifests.env_file(env).encode()).decode("ascii") + "\n"
    # The Secret (the project's env), the StatefulSet (labels only: the template is pinned), and the
    # Ingresses (the spec is no longer a pool member's, so it has them).
    apply_all(k, sandbox, replicas=1, converge=True)
    wanted = manifests.labels(spec, "sandbox")
    _relabel(k, "Service", names.service_name(spec.name), wanted)
    _relabel(k, "PersistentVolumeClaim", names.pvc_name(spec.name), wanted)
    _relabel(k, "Pod", pod, wanted)
    try:
        result = k.exec(
            pod,
            sh(_BIND_SCRIPT, BASHRC_LINE),
            stdin=payload,
            timeout=BIND_EXEC_TIMEOUT,
            container=spec.name,
            redact=[v for v in env.values() if len(v) >= 4],
        )
    except (KubeNotFound, KubePermanent):
        # The pod is gone or not running: start it cold from the project's own template instead.
        logger.info("sandbox %s: warm pod unavailable, binding cold", sandbox.pk)
        sandbox.pinned_checksum = ""
        apply_all(k, sandbox, replicas=1, converge=True)
        return Outcome(
            status=S.STARTING,
            reason="bound_cold",
            message="The warm pod was gone; starting the sandbox.",
            fields={"binding": False, "pinned_checksum": "", "observed_generation": sandbox.generation},
        )
    if not result.ok:
        return Outcome(
            message="Could not hand the project to the warm sandbox yet.", failed=True, retry_in=1.0
        )
    return Outcome(
        status=S.RUNNING,
        reason="bound",
        message="",
        fields={
            "binding": False,
            "observed_generation": sandbox.generation,
            "last_observed_at": timezone.now(),
            "last_error": "",
        },
    )
