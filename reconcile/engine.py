"""Claim, act, record (DESIGN §5).

- claim: a short transaction selects due rows FOR UPDATE SKIP LOCKED and stamps a lease
  (`locked_until` + a fresh `lease_token`); the row lock ends at commit.
- act: outside any transaction, never sleeping, the batch's steps concurrently in per-owner lanes
  (`act_all`; project tasks, whose steps are long, one by one in `run_batch`).
- record: conditional on the lease token, the whole batch in one transaction (`record_all`); a row whose
  lease was lost is dropped (and logged), the others are kept.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Case, Count, F, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core import observability
from core.audit import RECONCILER
from projects.transitions import Write, write_batch
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


def _fair_candidates(
    queue: Queue, now: datetime, ids: list[Any] | None, limit: int, prefer: list[Any] | None = None
) -> list[Any]:
    """Due rows, oldest first (`prefer`red ones before the others), fair across owners: each owner gets
    at most RECONCILE_USER_CONCURRENCY rows under lease at once (counting those already leased) while
    anyone else's rows wait, and owners are interleaved so the batch serves each in turn. Room that is
    left once every owner has had its share goes to the rows that waited behind the cap, oldest first:
    one user's burst uses the workers nobody else needs, and a second user's rows are still served
    first at the next claim (a work-conserving cap)."""
    cap = settings.RECONCILE_USER_CONCURRENCY
    held = dict(
        queue.model._default_manager.filter(locked_until__gt=now)
        .order_by()
        .values_list(queue.owner)
        .annotate(n=Count("pk"))
    )
    due = _due(queue, now)
    if ids is not None:
        due = due.filter(pk__in=ids)
    qs = due.exclude(**{f"{queue.owner}__in": [o for o, n in held.items() if n >= cap]})
    oldest_first: tuple[Any, ...] = (F("next_attempt_at").asc(nulls_first=True), F(queue.age).asc())
    if prefer:
        qs = qs.annotate(preferred=Case(When(pk__in=prefer, then=Value(0)), default=Value(1)))
        oldest_first = (F("preferred").asc(), *oldest_first)
    turn = Window(RowNumber(), partition_by=[F(queue.owner)], order_by=oldest_first)
    rows = (
        qs.annotate(turn=turn, owner=F(queue.owner))
        .filter(turn__lte=cap)
        .order_by("turn", *oldest_first)
        .values_list("pk", "owner", "turn")[: limit + len(held)]
    )
    rows = list(rows)
    chosen = [pk for pk, owner, turn in rows if turn <= cap - held.get(owner, 0)][:limit]
    capped = any(n >= cap for n in held.values()) or any(turn == cap for _, _, turn in rows)
    if capped and len(chosen) < limit:  # everyone had their share: the rest goes to who waited
        waited = due.exclude(pk__in=chosen).order_by(*oldest_first[-2:]).values_list("pk", flat=True)
        chosen += list(waited[: limit - len(chosen)])
    return chosen


def claim(
    model: type[Any] | Queue,
    *,
    ids: list[Any] | None = None,
    prefer: list[Any] | None = None,
    limit: int | None = None,
    lease: float | None = None,
) -> list[Any]:
    """Claim due rows of `model` (a resource model, or a Queue) fairly across owners and stamp them with
    a fresh lease: only `ids` when given, the rows in `prefer` first. A stopping worker claims nothing."""
    if shutting_down():
        return []
    queue = queue_for(model)
    now = timezone.now()
    limit = limit or settings.RECONCILE_BATCH_SIZE
    candidates = _fair_candidates(queue, now, ids, limit, prefer)
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
    """Write the outcome of one step while our lease still holds, and release the lease.

    Returns the delay in seconds after which the row wants its next step, or None when it has
    reached a stable status (or the lease was lost).
    """
    return record_all(type(row), [(row, outcome)])[0][1]


def record_all(
    model: type[Any], results: list[tuple[Resource, Outcome]]
) -> list[tuple[Resource, float | None]]:
    """Write the outcomes of a claimed batch's steps in one transaction and a constant number of
    statements (`transitions.write_batch`), each only while the row still holds the batch's lease; a row
    whose lease was lost is dropped (and logged) and the others are kept.

    Returns each row with the delay in seconds after which it wants its next step, or None when it has
    reached a stable status (or its lease was lost)."""
    if not results:
        return []
    kind = _kind(model)
    now = timezone.now()
    by_token: dict[Any, list[Write]] = {}
    delays: dict[Any, float | None] = {}
    left: dict[Any, tuple[str, timedelta]] = {}
    for row, outcome in results:
        assert row.lease_token is not None
        if outcome.status and outcome.status != row.status:
            write = Write(row, outcome.status, outcome.reason, outcome.message, outcome.fields)
            delays[row.pk] = 0.0 if outcome.status in TRANSITIONAL else None
            left[row.pk] = (row.status, now - row.status_changed_at)
        else:
            values, delays[row.pk] = _staying(row, outcome, now, kind)
            write = Write(row, values=values)
        by_token.setdefault(row.lease_token, []).append(write)
    written: set[Any] = set()
    for token, writes in by_token.items():
        written |= write_batch(model, writes, actor=RECONCILER, lease_token=token)
    recorded: list[tuple[Resource, float | None]] = []
    for row, _outcome in results:
        if row.pk not in written:
            observability.LEASES_LOST.labels(kind).inc()
            logger.warning("lease lost on %s %s (%s): result dropped", kind, row.pk, row.status)
            _release_orphaned(row)
            recorded.append((row, None))
            continue
        if row.pk in left:
            status, in_status = left[row.pk]
            observability.TIME_IN_STATUS.labels(kind, status).observe(in_status.total_seconds())
        recorded.append((row, delays[row.pk]))
    return recorded


def _staying(row: Resource, outcome: Outcome, now: datetime, kind: str) -> tuple[dict[str, Any], float]:
    """The columns a step that stays in its status writes, and when the row wants its next step."""
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
    return values, retry_in


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
            _release_unstarted(model, rows[i:])
            break
        outcome = _act_one(model, step, row, on_crash)
        delay = record_fn(row, outcome)
        if delay is not None and follow_up is not None:
            follow_up(row, delay)
        done += 1
    return done


def _release_unstarted(model: type[Any], rows: list[Any]) -> None:
    """Give back claimed rows no step was run on (the lease ran low, or the worker is stopping)."""
    if shutting_down():
        logger.info("worker stopping: released %d claimed %s rows", len(rows), _kind(model))
    model._default_manager.filter(pk__in=[r.pk for r in rows], lease_token=rows[0].lease_token).update(
        locked_until=None, lease_token=None
    )


def error_outcome(message: str, reason: str = "error") -> Outcome:
    return Outcome(status=ResourceStatus.ERROR, reason=reason, message=message)


Step = Callable[[Any], Outcome]


def act_all(
    model: type[Any],
    step: Step,
    rows: list[Any],
    *,
    lane_of: Callable[[Any], Any],
    lanes: int,
    threads: int,
    lease: float | None = None,
) -> list[tuple[Any, Outcome]]:
    """Act on a claimed batch with bounded concurrency: each key of `lane_of` (the owner: their cluster)
    gets at most `lanes` lanes, each lane takes its rows one after the other, and at most `threads` lanes
    run at once. Steps must not touch the database (the caller loads what they need first). A lane stops
    (its rows released) once half the lease is gone or the worker is stopping. Returns each row acted on
    with its outcome, in claim order; a step's bug becomes a failed outcome."""
    started = time.monotonic()
    budget = (lease or lease_seconds()) / 2
    by_key: dict[Any, list[Any]] = {}
    for row in rows:
        by_key.setdefault(lane_of(row), []).append(row)
    work: list[list[Any]] = []
    for owned in by_key.values():  # an owner's rows dealt round-robin into its lanes
        n = min(lanes, len(owned))
        work += [owned[i::n] for i in range(n)]
    outcomes: dict[Any, Outcome] = {}

    def run_lane(lane: list[Any]) -> None:
        try:
            for row in lane:
                if time.monotonic() - started > budget or shutting_down():
                    return
                outcomes[row.pk] = _act_one(model, step, row)
        finally:
            if threading.current_thread() is not main:
                connections.close_all()  # a step that opened a connection in this thread must not leak it

    main = threading.current_thread()
    if threads <= 1 or len(work) <= 1:
        for lane in work:
            run_lane(lane)
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(work)), thread_name_prefix="tenter-act") as pool:
            list(pool.map(run_lane, work))
    unstarted = [row for row in rows if row.pk not in outcomes]
    if unstarted:
        _release_unstarted(model, unstarted)
    return [(row, outcomes[row.pk]) for row in rows if row.pk in outcomes]


def _act_one(
    model: type[Any], step: Step, row: Any, on_crash: Callable[[Exception], Outcome] | None = None
) -> Outcome:
    """One step, timed and logged under the row's id; a bug becomes `on_crash`'s outcome (default: a
    failed one, which backs off) instead of wedging the row."""
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
        logger.debug("%s step on %s %s: %s", status, kind, row.pk, result)
        observability.STEP_SECONDS.labels(kind, status.lower(), result).observe(
            time.perf_counter() - step_started
        )
        return outcome
    finally:
        observability.resource_id.reset(context)
