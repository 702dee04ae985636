"""Claim, act, record (DESIGN §5).

- claim: a short transaction selects due rows FOR UPDATE SKIP LOCKED and stamps a lease
  (`locked_until` + a fresh `lease_token`); the row lock ends at commit.
- act: outside any transaction, one step per claim, never sleeping.
- record: a conditional UPDATE on the lease token; zero rows means the lease was lost and the
  result is dropped (and logged).
"""

import atexit
import contextlib
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core import observability
from core.audit import RECONCILER
from projects.transitions import change_status
from sandboxes.models import TRANSITIONAL, Resource, ResourceStatus

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one step decided: a new status, or 'come back later' with observed fields."""

    status: str | None = None  # None: stay in the current status
    reason: str = ""
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    retry_in: float | None = None  # seconds until the next attempt when staying
    failed: bool = False  # a transient failure: counts an attempt and backs off


# --- Stopping cleanly (SIGTERM on a rolling update) --------------------------------------------------
# A worker told to stop finishes the step in hand, releases the leases of the rows it claimed but has not
# reached, and claims nothing more. The worker's main process hears the signal (Celery's
# worker_shutting_down, wired in reconcile/tasks.py); its pool children learn it from a flag file named
# after the main process (they stat it between steps), threads and the solo pool from the event.
_STOPPING = threading.Event()


def _stop_flag(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"tenter-worker-{pid}.stopping")


def begin_shutdown() -> None:
    _STOPPING.set()
    flag = _stop_flag(os.getpid())
    with contextlib.suppress(OSError), open(flag, "w"):
        pass
    atexit.register(_remove_flag, flag)  # gone once this process is


def _remove_flag(flag: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(flag)


def clear_shutdown() -> None:
    """At worker start (a flag left by a killed process of the same pid must not stop the new one)."""
    _STOPPING.clear()
    with contextlib.suppress(OSError):
        os.unlink(_stop_flag(os.getpid()))


def shutting_down() -> bool:
    return _STOPPING.is_set() or os.path.exists(_stop_flag(os.getppid()))


def lease_seconds() -> float:
    return float(settings.RECONCILE_LEASE_SECONDS)


@dataclass(frozen=True)
class Queue:
    """What the engine claims: rows of `model` that `due(now)` selects, owned by `owner` (for fairness),
    oldest first by `age`. Resources (the default) and project tasks share every other rule."""

    model: type[Any]
    due: Callable[[datetime], Q]
    owner: str = "project__owner_id"
    age: str = "status_changed_at"
    related: tuple[str, ...] = ("project",)


def lease_free_q(now: datetime) -> Q:
    return (Q(locked_until__isnull=True) | Q(locked_until__lte=now)) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def _resource_due(now: datetime) -> Q:
    return Q(status__in=TRANSITIONAL) & lease_free_q(now)


def queue_for(model: type[Any] | Queue) -> Queue:
    return model if isinstance(model, Queue) else Queue(model=model, due=_resource_due)


def _due(queue: Queue, now: datetime) -> QuerySet[Any]:
    return queue.model._default_manager.filter(queue.due(now))


def _fair_candidates(queue: Queue, now: datetime, ids: list[Any] | None, limit: int) -> list[Any]:
    """Due rows, oldest first, taking at most RECONCILE_USER_CONCURRENCY rows of one owner under lease at
    once (counting those already leased): one user's slow or failing cluster cannot fill every worker;
    their other rows wait, holding nothing. Owners are interleaved so the batch serves each in turn."""
    cap = settings.RECONCILE_USER_CONCURRENCY
    held = dict(
        queue.model._default_manager.filter(locked_until__gt=now)
        .order_by()
        .values_list(queue.owner)
        .annotate(n=Count("pk"))
    )
    qs = _due(queue, now).exclude(**{f"{queue.owner}__in": [o for o, n in held.items() if n >= cap]})
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    oldest_first = (F("next_attempt_at").asc(nulls_first=True), F(queue.age).asc())
    turn = Window(RowNumber(), partition_by=[F(queue.owner)], order_by=oldest_first)
    rows = (
        qs.annotate(turn=turn, owner=F(queue.owner))
        .filter(turn__lte=cap)
        .order_by("turn", *oldest_first)
        .values_list("pk", "owner", "turn")[: limit + len(held)]
    )
    return [pk for pk, owner, turn in rows if turn <= cap - held.get(owner, 0)][:limit]


def claim(
    model: type[Any] | Queue,
    *,
    ids: list[Any] | None = None,
    limit: int | None = None,
    lease: float | None = None,
) -> list[Any]:
    """Claim due rows of `model` (a resource model, or a Queue) fairly across owners and stamp them with
    a fresh lease. A stopping worker claims nothing."""
    if shutting_down():
        return []
    queue = queue_for(model)
    now = timezone.now()
    limit = limit or settings.RECONCILE_BATCH_SIZE
    candidates = _fair_candidates(queue, now, ids, limit)
    if not candidates:
        return []
    with transaction.atomic():
        locked = (
            _due(queue, now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related(*queue.related)
            .filter(pk__in=candidates)
        )
        order = {pk: i for i, pk in enumerate(candidates)}
        rows = sorted(locked, key=lambda row: order[row.pk])
        if not rows:
            return []
        token = uuid.uuid4()
        until = now + timedelta(seconds=(lease or lease_seconds()) + random.uniform(0, 2))
        queue.model._default_manager.filter(pk__in=[r.pk for r in rows]).update(
            locked_until=until, lease_token=token
        )
    for row in rows:
        row.locked_until, row.lease_token = until, token
    observability.CLAIMS.labels(_kind(queue.model)).inc(len(rows))
    return rows


def _kind(model: type[Any]) -> str:
    return model.__name__.lower()


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    base = float(settings.RECONCILE_BACKOFF_BASE_SECONDS)
    cap = float(settings.RECONCILE_BACKOFF_MAX_SECONDS)
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    delay = random.uniform(delay / 2, delay)  # jitter spreads retries of many rows
    if retry_after:
        delay = max(delay, retry_after)
    return delay


def record(row: Resource, outcome: Outcome) -> float | None:
    """Write the outcome of a step while our lease still holds, and release the lease.

    Returns the delay in seconds after which the row wants its next step, or None when it has
    reached a stable status (or the lease was lost).
    """
    token = row.lease_token
    assert token is not None
    retry_in: float | None = None
    kind = _kind(type(row))
    if outcome.status and outcome.status != row.status:
        left, in_status = row.status, timezone.now() - row.status_changed_at
        written = change_status(
            row,
            outcome.status,
            actor=RECONCILER,
            reason=outcome.reason,
            message=outcome.message,
            lease_token=token,
            fields=outcome.fields,
        )
        retry_in = 0.0 if outcome.status in TRANSITIONAL else None
        if written:
            observability.TIME_IN_STATUS.labels(kind, left).observe(in_status.total_seconds())
    else:
        now = timezone.now()
        values: dict[str, Any] = {
            "locked_until": None,
            "lease_token": None,
            "updated_at": now,
            **outcome.fields,
        }
        if outcome.message:
            values["status_reason"] = outcome.message
        if outcome.failed:
            attempts = row.attempts + 1
            retry_in = backoff_seconds(attempts, outcome.retry_in)
            observability.BACKOFFS.labels(kind).inc()
            values.update(attempts=attempts, last_error=outcome.message)
        else:
            values["attempts"] = 0  # progress: the next failure starts its backoff afresh
            retry_in = outcome.retry_in if outcome.retry_in is not None else settings.RECONCILE_POLL_SECONDS
        values["next_attempt_at"] = now + timedelta(seconds=retry_in)
        written = type(row)._default_manager.filter(pk=row.pk, lease_token=token).update(**values) > 0
    if not written:
        observability.LEASES_LOST.labels(kind).inc()
        logger.warning(
            "lease lost on %s %s (%s): result dropped", type(row).__name__.lower(), row.pk, row.status
        )
        _release_orphaned(row)
        return None
    return retry_in


def _release_orphaned(row: Resource) -> None:
    """A user action took the row from us (token cleared) while we acted: free it for the next claim now
    instead of when our lease would have expired."""
    type(row)._default_manager.filter(
        pk=row.pk, lease_token__isnull=True, locked_until=row.locked_until
    ).update(locked_until=None, next_attempt_at=None)


def deadline_passed(row: Resource, now: datetime | None = None) -> timedelta | None:
    """How long the row has been working on its transitional status (time spent waiting for a usable
    kubeconfig not counted), when that is past its deadline."""
    limit = settings.STATUS_DEADLINES.get(row.status)
    if limit is None:
        return None
    age = (now or timezone.now()) - row.status_changed_at - row.paused
    return age if age > limit else None


def describe_age(age: timedelta) -> str:
    minutes = age.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{age.total_seconds():.0f} s"


def run_batch(
    model: type[Any],
    step: Callable[[Any], Any],
    rows: list[Any],
    follow_up: Callable[[Any, float], None] | None = None,
    *,
    record_fn: Callable[[Any, Any], float | None] | None = None,
    on_crash: Callable[[Exception], Any] | None = None,
    lease: float | None = None,
) -> int:
    """Act on claimed rows one by one; stop early (releasing the rest) if the lease would run out or the
    worker is stopping. `record_fn` writes a step's result (resources: `record`); `on_crash` turns a
    step's bug into an outcome."""
    record_fn = record_fn or record
    started = time.monotonic()
    done = 0
    for i, row in enumerate(rows):
        if time.monotonic() - started > (lease or lease_seconds()) / 2 or shutting_down():
            if shutting_down():
                logger.info(
                    "worker stopping: released %d claimed %s rows", len(rows) - i, model.__name__.lower()
                )
            model._default_manager.filter(
                pk__in=[r.pk for r in rows[i:]], lease_token=row.lease_token
            ).update(locked_until=None, lease_token=None)
            break
        kind, status = _kind(model), row.status
        context = observability.resource_id.set(f"{kind}:{row.pk}")  # on every line of this step
        step_started = time.perf_counter()
        try:
            try:
                outcome = step(row)
                moved = outcome.status not in (None, status)
                result = "failed" if outcome.failed else "moved" if moved else "ok"
            except Exception as exc:  # a bug must not wedge the row: back off and keep the reason
                logger.exception("reconcile step failed on %s %s", kind, row.pk)
                outcome = (
                    on_crash(exc)
                    if on_crash
                    else Outcome(failed=True, message=f"internal error: {exc.__class__.__name__}")
                )
                result = "error"
            delay = record_fn(row, outcome)
            logger.debug("%s step on %s %s: %s", status, kind, row.pk, result)
            observability.STEP_SECONDS.labels(kind, status.lower(), result).observe(
                time.perf_counter() - step_started
            )
            if delay is not None and follow_up is not None:
                follow_up(row, delay)
        finally:
            observability.resource_id.reset(context)
        done += 1
    return done


def error_outcome(message: str, reason: str = "error") -> Outcome:
    return Outcome(status=ResourceStatus.ERROR, reason=reason, message=message)
