"""Drive one kind of resource: claim due rows, build the owner's client, run a step, map errors."""

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from core import kick as kicks
from core import observability
from reconcile import database as database_steps
from reconcile import engine
from reconcile import sandbox as sandbox_steps
from reconcile.engine import Outcome
from reconcile.kube.cache import get_kube
from reconcile.kube.client import Kube
from reconcile.kube.egress import EgressPolicy
from reconcile.kube.errors import (
    KubeconfigInvalid,
    KubeConflict,
    KubeCredentials,
    KubeError,
    KubePermanent,
    KubeTransient,
)
from sandboxes.models import Database, Resource, Sandbox
from userconfig.models import CheckStatus, ConfigKey, UserConfig

logger = logging.getLogger(__name__)

SLOW_STEP_SECONDS = 2.0  # a step that failed after this long marks its owner's cluster slow for the batch
Step = Callable[[Any, Kube], Outcome]
STEPS: dict[type[Resource], Step] = {Sandbox: sandbox_steps.step, Database: database_steps.step}
PREPARE: dict[type[Resource], Callable[[list[Any]], None]] = {Sandbox: sandbox_steps.prepare}


def egress_policy() -> EgressPolicy:
    """The workers' egress policy: public addresses plus KUBE_EGRESS_ALLOW_CIDRS."""
    return EgressPolicy.from_cidrs(settings.KUBE_EGRESS_ALLOW_CIDRS)


def client_for(config: UserConfig) -> Kube:
    """The owner's cached gateway client, with the timeouts, the cache size and the egress policy
    from the settings."""
    return get_kube(
        config.user_id,
        config.value,
        timeouts=(settings.KUBE_CONNECT_TIMEOUT, settings.KUBE_READ_TIMEOUT),
        max_clients=settings.KUBE_CLIENT_CACHE_SIZE,
        egress=egress_policy(),
    )


def _kubeconfigs(rows: list[Resource]) -> dict[int, UserConfig]:
    owners = {_owner(row) for row in rows}
    configs = UserConfig.objects.filter(user_id__in=owners, key=ConfigKey.KUBECONFIG)
    return {c.user_id: c for c in configs}


def _describe(exc: KubeError) -> str:
    """The error as shown on the resource: the gateway's generic class, never remote text."""
    return exc.message or exc.reason or "Kubernetes request failed"


def _unusable(row: Resource, config: UserConfig | None) -> str | None:
    """Why the owner's kubeconfig cannot be used for this row right now (None: it can)."""
    if config is None:
        return "no kubeconfig is stored for the owner"
    if config.check_status in (CheckStatus.FAILED, CheckStatus.UNREACHABLE):
        # Don't burn attempts against a cluster we already know we can't use.
        return f"the kubeconfig check failed: {config.check_message}"
    if row.k8s_server and config.server_host != row.k8s_server:
        return (
            f"the kubeconfig now points at {config.server_host}, but this resource lives on {row.k8s_server}"
        )
    return None


def act(row: Resource, config: UserConfig | None, step: Step) -> Outcome:
    """One step for one claimed row, on the cluster and in the namespace recorded on the row, with every
    cluster error turned into an outcome. While the kubeconfig cannot be used the row waits (its
    status's deadline clock stopped) until KUBECONFIG_WAIT_DEADLINE, then fails with the reason."""
    now = timezone.now()
    why = _unusable(row, config)
    if why is not None:
        since = row.waiting_since or now
        if now - since > settings.KUBECONFIG_WAIT_DEADLINE:
            return engine.error_outcome(
                f"gave up after waiting {engine.describe_age(now - since)}: {why}", reason="kubeconfig"
            )
        return Outcome(
            message=f"Waiting: {why}.",
            retry_in=settings.KUBECONFIG_WAIT_RETRY_SECONDS,
            fields={"waiting_since": since},
        )
    assert config is not None
    resumed: dict[str, Any] = {}
    if row.waiting_since is not None:  # the kubeconfig is usable again: resume where the row was
        row.paused += now - row.waiting_since
        row.waiting_since = None
        resumed = {"waiting_since": None, "paused": row.paused}
    outcome = _step(row, config, step)
    outcome.fields = {**resumed, **outcome.fields}
    return outcome


def _step(row: Resource, config: UserConfig, step: Step) -> Outcome:
    try:
        client = client_for(config).for_step(row.k8s_namespace, settings.RECONCILE_STEP_BUDGET_SECONDS)
        return step(row, client)
    except KubeError as exc:
        observability.KUBE_ERRORS.labels(type(row).__name__.lower(), type(exc).__name__).inc()
        # Operators get the class, reason and status; users only the generic message (below).
        logger.info(
            "%s %s: %s (%s, status %s)",
            type(row).__name__.lower(),
            row.pk,
            type(exc).__name__,
            exc.reason,
            exc.status,
        )
        return _outcome(exc)


def _outcome(exc: KubeError) -> Outcome:
    if isinstance(exc, KubeconfigInvalid):
        return engine.error_outcome(f"invalid kubeconfig: {_describe(exc)}", reason="kubeconfig")
    if isinstance(exc, KubeCredentials):
        return engine.error_outcome(_describe(exc), reason="forbidden")
    if isinstance(exc, KubePermanent):
        return engine.error_outcome(_describe(exc), reason="rejected")
    if isinstance(exc, KubeTransient):
        return Outcome(failed=True, message=f"transient: {_describe(exc)}", retry_in=exc.retry_after)
    if isinstance(exc, KubeConflict):
        return Outcome(failed=True, message=f"conflict: {_describe(exc)}")
    return Outcome(failed=True, message=_describe(exc))  # e.g. a KubeNotFound a step did not expect


def reconcile(
    model: type[Resource],
    *,
    ids: list[Any] | None = None,
    prefer: list[Any] | None = None,
    limit: int | None = None,
    chain: bool = True,
) -> int:
    """Claim and process due rows of `model` (only `ids`, or any with `prefer` first). Returns how many
    rows were claimed.

    The batch's steps run concurrently (RECONCILE_ACT_CONCURRENCY lanes, at most
    RECONCILE_USER_CONCURRENCY of them on one owner's cluster), their outcomes are recorded together,
    and one kick per distinct delay brings a worker back to the rows that still have work."""
    limit = limit or settings.RECONCILE_BATCH_SIZE
    rows = engine.claim(model, ids=ids, prefer=prefer, limit=limit)
    if not rows:
        return 0
    if chain and ids is None and len(rows) >= limit:
        kicks.send_now(kicks.task_for(model))  # more is due: another worker starts on it meanwhile
    configs = _kubeconfigs(rows)
    prepare = PREPARE.get(model)
    if prepare is not None:
        prepare(rows)  # what the steps read from the database, loaded here: they run in other threads
    step = STEPS[model]
    slow: set[int] = set()  # owners whose cluster failed slowly in this batch

    def fair_act(row: Resource) -> Outcome:
        owner = _owner(row)
        if owner in slow:  # don't spend this worker on a cluster that just failed slowly: back off
            return Outcome(
                failed=True, message="transient: the cluster was slow to answer; trying again later"
            )
        started = time.monotonic()
        outcome = act(row, configs.get(owner), step)
        if outcome.failed and time.monotonic() - started > SLOW_STEP_SECONDS:
            slow.add(owner)
        return outcome

    results = engine.act_all(
        model,
        fair_act,
        rows,
        lane_of=_owner,
        lanes=settings.RECONCILE_USER_CONCURRENCY,
        threads=settings.RECONCILE_ACT_CONCURRENCY,
    )
    follow_up(model, [delay for _, delay in engine.record_all(model, results)])
    return len(rows)


def _owner(row: Resource) -> int:
    return row.project.owner_id  # type: ignore[attr-defined]


FOLLOW_UP_GRAIN = 0.25  # seconds: rows due within one grain of each other share one kick


def follow_up(model: type[Resource], delays: list[float | None]) -> None:
    """Come back to the rows that still have work without waiting for the sweep: one kick for each
    distinct delay (rounded up to FOLLOW_UP_GRAIN), which claims every row due by then."""
    due_in = {math.ceil(d / FOLLOW_UP_GRAIN) * FOLLOW_UP_GRAIN for d in delays if d is not None}
    for delay in sorted(due_in):
        # A little slack so the kick never arrives before the rows are due.
        kicks.send_later(kicks.task_for(model), "", delay + 0.05)


def sweep(model: type[Resource]) -> bool:
    """One bounded sweep. True when the batch was full, i.e. more work may remain."""
    limit = settings.RECONCILE_BATCH_SIZE
    return reconcile(model, limit=limit, chain=False) >= limit  # the sweep task chains itself
