"""The kubeconfig check: is the cluster reachable, and may this kubeconfig manage everything Tenter
creates in its namespace? Runs in the background after a save and periodically."""

import logging

from reconcile.kube.errors import KubeconfigInvalid, KubeCredentials, KubeError, KubeTransient
from reconcile.runner import client_for
from userconfig.models import CheckStatus, ConfigKey, UserConfig
from userconfig.services import kubeconfig_record_check

logger = logging.getLogger(__name__)

# (resource, API group) Tenter manages in a user's namespace, and the verbs it needs on each.
MANAGED = [
    ("statefulsets", "apps"),
    ("services", ""),
    ("ingresses", "networking.k8s.io"),
    ("secrets", ""),
    ("persistentvolumeclaims", ""),
    ("clusters", "apps.kubeblocks.io"),
]
VERBS = ["create", "get", "patch", "delete"]


def check_kubeconfig(user_id: int, *, record_unreachable: bool = True) -> tuple[str, str]:
    """Check and store the result. With `record_unreachable=False` an unreachable cluster is not
    stored (the caller retries soon), so one flaky moment does not park the user's rows."""
    config = UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG).first()
    if config is None:
        return "", ""
    status, message = _check(config)
    if status == CheckStatus.UNREACHABLE and not record_unreachable:
        return status, message
    kubeconfig_record_check(user_id=user_id, status=status, message=message)
    logger.info("kubeconfig check for user %s: %s", user_id, status)
    return status, message


def _check(config: UserConfig) -> tuple[str, str]:
    namespace = config.namespace
    try:
        client = client_for(config)
        client.version()
        missing = []
        for resource, group in MANAGED:
            for verb in VERBS:
                allowed, _ = client.can_i(verb, resource, group)
                if not allowed:
                    missing.append(f"{verb} {resource}{'.' + group if group else ''}")
    except KubeconfigInvalid as exc:
        return CheckStatus.FAILED, f"The kubeconfig cannot be used: {exc.message}"
    except KubeCredentials as exc:
        return CheckStatus.FAILED, f"The cluster refused these credentials: {exc.message}"
    except (KubeTransient, KubeError) as exc:
        return CheckStatus.UNREACHABLE, f"Cannot reach the cluster at {config.server_host}: {exc.message}"
    if missing:
        return (
            CheckStatus.FAILED,
            f"Missing permissions in namespace {namespace}: cannot {', '.join(missing)}.",
        )
    return CheckStatus.OK, f"Can manage sandboxes in namespace {namespace}."
