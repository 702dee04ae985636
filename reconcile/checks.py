"""The kubeconfig check: is the cluster reachable, and may this kubeconfig manage everything Tenter
creates in its namespace? Runs in the background after a save and periodically.

One check has a total time budget (KUBECONFIG_CHECK_BUDGET_SECONDS) and short timeouts of its own;
the access reviews run in parallel. What it stores is a generic sentence: never text the remote end
sent (it may not be a Kubernetes API server at all).
"""

import contextlib
import logging
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

import redis
from django.conf import settings
from django.core.cache import cache

from projects import services as project_services
from reconcile.kube.client import Kube
from reconcile.kube.errors import (
    NOT_KUBERNETES,
    TIMED_OUT,
    KubeconfigInvalid,
    KubeCredentials,
    KubeEgressRefused,
    KubeError,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
)
from reconcile.runner import egress_policy
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
PARALLEL_REVIEWS = 8


def check_kubeconfig(user_id: int, *, record_unreachable: bool = True) -> tuple[str, str]:
    """Check and store the result, for the kubeconfig in use and for a pending new one (promoted when
    its check passes). With `record_unreachable=False` an unreachable cluster is not stored (the caller
    retries soon), so one flaky moment does not park the user's rows. Returns the worse of the two."""
    config = UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG).first()
    if config is None:
        return "", ""
    status, message = _check(config)
    if status != CheckStatus.UNREACHABLE or record_unreachable:
        kubeconfig_record_check(user_id=user_id, status=status, message=message)
        logger.info("kubeconfig check for user %s: %s", user_id, status)
    pending = UserConfig.objects.filter(user_id=user_id, key=ConfigKey.KUBECONFIG_PENDING).first()
    if pending is None:
        return status, message
    p_status, p_message = _check(pending)
    logger.info("pending kubeconfig check for user %s: %s", user_id, p_status)
    if p_status == CheckStatus.OK:
        project_services.kubeconfig_pending_passed(
            user_id=user_id, updated_at=pending.updated_at, status=p_status, message=p_message
        )
    elif p_status != CheckStatus.UNREACHABLE or record_unreachable:
        kubeconfig_record_check(
            user_id=user_id,
            status=p_status,
            message=p_message,
            key=ConfigKey.KUBECONFIG_PENDING,
            updated_at=pending.updated_at,
        )
    if CheckStatus.UNREACHABLE in (status, p_status):
        return CheckStatus.UNREACHABLE, p_message if p_status == CheckStatus.UNREACHABLE else message
    return status, message


def _check(config: UserConfig) -> tuple[str, str]:
    try:
        missing = _missing_permissions(config)
    except KubeError as exc:
        logger.info(
            "kubeconfig check for user %s failed: %s (%s, status %s)",
            config.user_id,
            type(exc).__name__,
            exc.reason,
            exc.status,
        )
        return _failure(config, exc)
    if missing:
        return (
            CheckStatus.FAILED,
            f"Missing permissions in namespace {config.namespace}: cannot {', '.join(missing)}.",
        )
    return CheckStatus.OK, f"Can manage sandboxes in namespace {config.namespace}."


def _failure(config: UserConfig, exc: KubeError) -> tuple[str, str]:
    """The stored result for a failed check: the gateway's generic message, never remote text."""
    host = config.server_address
    if isinstance(exc, KubeEgressRefused):
        return CheckStatus.FAILED, f"The cluster address {host} is {exc.message}."
    if isinstance(exc, KubeconfigInvalid):
        return CheckStatus.FAILED, f"The kubeconfig cannot be used: {exc.message}"
    if isinstance(exc, KubeCredentials) and exc.reason == "TLSVerifyFailed":
        return (
            CheckStatus.FAILED,
            f"Cannot use the cluster at {host}: {exc.message} (check the kubeconfig's "
            "certificate-authority-data and the server name).",
        )
    if isinstance(exc, KubeCredentials):
        return CheckStatus.FAILED, f"The cluster refused these credentials: {exc.message}."
    if isinstance(exc, KubePermanent):
        return CheckStatus.FAILED, f"Cannot use the cluster at {host}: {exc.message}."
    return CheckStatus.UNREACHABLE, f"Cannot reach the cluster at {host}: {exc.message}."


def _version(client: Kube) -> str:
    """The reachability call: a 404 here means whatever answers is not a Kubernetes API server."""
    try:
        return client.version()
    except KubeNotFound as exc:
        raise KubePermanent(NOT_KUBERNETES, status=404, reason="NotKubernetes") from exc
    except KubePermanent as exc:
        if exc.kind_missing:
            raise KubePermanent(NOT_KUBERNETES, status=404, reason="NotKubernetes") from exc
        raise


def _missing_permissions(config: UserConfig) -> list[str]:
    """The version call, then every access review in parallel, all within the check's budget.
    Raises the first KubeError; a budget overrun is a KubeTransient "connection timed out"."""
    deadline = time.monotonic() + float(settings.KUBECONFIG_CHECK_BUDGET_SECONDS)
    connect, read = settings.KUBECONFIG_CHECK_TIMEOUTS
    client = Kube(config.value, connect_timeout=connect, read_timeout=read, egress=egress_policy())
    pool = ThreadPoolExecutor(max_workers=PARALLEL_REVIEWS, thread_name_prefix="kubeconfig-check")

    def finish(futures: list[Future]) -> None:
        done, pending = wait(
            futures, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_EXCEPTION
        )
        for future in done:
            if future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        if pending:
            raise KubeTransient(TIMED_OUT, reason="CheckBudget")

    try:
        finish([pool.submit(_version, client)])
        reviews = [
            (verb, resource, group, pool.submit(client.can_i, verb, resource, group))
            for resource, group in MANAGED
            for verb in VERBS
        ]
        finish([future for *_, future in reviews])
        return [
            f"{verb} {resource}{'.' + group if group else ''}"
            for verb, resource, group, future in reviews
            if not future.result()[0]
        ]
    finally:
        # Requests still in flight end at their own read timeout; nobody waits for them.
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()


# --- the rate limit: at most one check per user per KUBECONFIG_CHECK_INTERVAL_SECONDS ---------------


def _key(user_id: object, what: str) -> str:
    return f"kubeconfig-check:{what}:{user_id}"  # in the Redis cache, under its key prefix


def take_check_slot(user_id: object) -> float:
    """0.0 when this user's check may run now (the slot is now taken for the interval); otherwise the
    seconds until it may. Fails open when Redis does not answer (the broker is Redis: rare)."""
    interval = float(settings.KUBECONFIG_CHECK_INTERVAL_SECONDS)
    now = time.time()
    try:
        if cache.add(_key(user_id, "slot"), now + interval, timeout=interval):
            return 0.0
        return max(0.05, float(cache.get(_key(user_id, "slot")) or now) - now)
    except redis.RedisError as exc:
        logger.warning("kubeconfig check rate limit unavailable: %s", type(exc).__name__)
        return 0.0


def schedule_later_check(user_id: object, delay: float) -> bool:
    """Claim the one later check of this user (True: the caller schedules it; False: one already is)."""
    try:
        return bool(cache.add(_key(user_id, "later"), 1, timeout=delay + 60))
    except redis.RedisError:
        return False


def release_later_check(user_id: object) -> None:
    with contextlib.suppress(redis.RedisError):
        cache.delete(_key(user_id, "later"))
