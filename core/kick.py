"""The seam between the domain and the reconciler: kick a reconcile task by name after commit.

Services never import the reconciler, its tasks or the Kubernetes client: a task is sent by its name
(`reconcile.<model>` for a resource row) on the Celery app configured for this process. A kick is an
optimisation: if the broker is down the beat sweep still finds the row.

A kick can never hurt the request that caused it: the request thread only puts the kick on a bounded
in-process queue (never blocking; a full queue drops the kick with a warning) and one background thread
per process publishes it, on its own broker connection with short connect and socket timeouts and no
retries. A broker that refuses connections, or a network path that swallows packets, costs that thread
a timeout, never a request; after a failure it drops kicks for KICK_BACKOFF_SECONDS instead of paying
that timeout once per queued kick.
"""

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import models, transaction

from core import observability

logger = logging.getLogger(__name__)

KUBECONFIG_CHECK = "reconcile.check_kubeconfig"
# Tasks whose kick means "claim what is due" (a batch, the kicked row first), not "do this one row": a
# kick of one of these while another is still waiting to be picked up adds nothing, so it is coalesced
# (in this process, and across processes through a short-lived flag in Redis that the worker clears as
# it starts, before it claims: a row committed after that gets a kick of its own).
COALESCED = frozenset({"reconcile.sandbox", "reconcile.database"})


def task_for(resource: models.Model | type[models.Model]) -> str:
    """The reconcile task of a resource row: `reconcile.sandbox`, `reconcile.database`."""
    return f"reconcile.{resource._meta.model_name}"


@dataclass
class KickStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    coalesced: int = 0
    last_error: str = ""


class Dispatcher:
    """A bounded queue and one daemon thread that publishes kicks. Started lazily, once per process
    (a forked worker child starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[tuple[str, str, float | None, str]] = queue.Queue()
        self._waiting: set[str] = set()  # coalesced tasks with a kick in the queue
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._connection_url = ""
        self._idle = threading.Event()
        self._down_until = 0.0
        self.stats = KickStats()

    # --- request side: never blocks ------------------------------------------------------------

    def submit(self, task_name: str, arg: str, countdown: float | None = None) -> bool:
        self._ensure_started()
        coalesce = countdown is None and task_name in COALESCED
        if coalesce:
            with self._lock:
                if task_name in self._waiting:
                    self.stats.coalesced += 1
                    return True
                self._waiting.add(task_name)
        try:  # the request id travels with the kick: the publishing thread has no request context
            self._queue.put_nowait((task_name, arg, countdown, observability.request_id.get()))
        except queue.Full:
            if coalesce:
                self._waiting.discard(task_name)
            self.stats.dropped += 1
            logger.warning("kick queue full; dropped %s(%s) (the sweep will find it)", task_name, arg)
            return False
        self._idle.clear()
        self.stats.queued += 1
        return True

    def _ensure_started(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:  # first use, or a forked child: the parent's thread is not here
                self._queue = queue.Queue(maxsize=settings.KICK_QUEUE_SIZE)
                self._waiting = set()
                self._connection = None
                self.stats = KickStats()
            self._pid = pid
            self._thread = threading.Thread(target=self._run, name="tenter-kick", daemon=True)
            self._thread.start()

    # --- the publishing thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if self._queue.empty():
                self._idle.set()
            task_name, arg, countdown, request_id = self._queue.get()
            coalesced = countdown is None and task_name in COALESCED
            if coalesced:
                with self._lock:
                    self._waiting.discard(task_name)
            if time.monotonic() < self._down_until:
                # The broker just failed: do not spend a timeout per queued kick; the sweep has them.
                self.stats.dropped += 1
                continue
            if coalesced and not _take_pending(task_name):  # a task for it already waits on the broker
                self.stats.coalesced += 1
                continue
            try:
                self._publish(task_name, arg, countdown, request_id)
            except Exception as exc:  # the sweep is the guarantee
                self.stats.failed += 1
                self.stats.last_error = exc.__class__.__name__
                logger.warning("could not enqueue %s(%s): %s", task_name, arg, exc.__class__.__name__)
                self._drop_connection()
                self._down_until = time.monotonic() + settings.KICK_BACKOFF_SECONDS
                if coalesced:
                    picked_up(task_name)  # nothing is waiting after all: the next kick must be sent
            else:
                self.stats.sent += 1

    def _publish(self, task_name: str, arg: str, countdown: float | None, request_id: str = "") -> None:
        headers = {observability.REQUEST_ID_HEADER: request_id} if request_id else None
        current_app.send_task(
            task_name,
            args=[arg],
            countdown=countdown,
            retry=False,
            connection=self._get_connection(),
            headers=headers,
        )

    def _get_connection(self) -> Any:
        url = settings.CELERY_BROKER_URL
        if self._connection is None or self._connection_url != url:
            self._drop_connection()
            timeout = settings.KICK_BROKER_TIMEOUT
            self._connection = current_app.connection_for_write(
                url,
                connect_timeout=timeout,
                transport_options={
                    "socket_connect_timeout": timeout,
                    "socket_timeout": timeout,
                    "max_retries": 0,  # one attempt: no reconnect loop when publishing a kick
                    "retry_on_timeout": False,
                },
            )
            self._connection_url = url
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already broken
                connection.release()

    def reset(self) -> None:
        """Forget the connection (the broker URL changed); the thread makes a new one on its next kick."""
        self._down_until = 0.0
        self._connection_url = ""  # the thread reconnects lazily, with the new URL, on its next kick

    def wait_idle(self, timeout: float) -> bool:
        """For tests and shutdown: wait until every queued kick was published or given up on."""
        if self._thread is None or not self._thread.is_alive():
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.05):
                return True
        return False


dispatcher = Dispatcher()


def _pending_key(task_name: str) -> str:
    return f"kick-pending:{settings.CELERY_TASK_DEFAULT_QUEUE}:{task_name}"


def _take_pending(task_name: str) -> bool:
    """Mark a coalesced task as waiting on the broker; False when it already was (nothing to send).
    Redis unavailable: send (a task too many is harmless, a missing one waits for the sweep)."""
    try:
        return bool(cache.add(_pending_key(task_name), 1, timeout=settings.KICK_PENDING_SECONDS))
    except Exception:
        return True


def picked_up(task_name: str) -> None:
    """A worker starts a coalesced task: kicks from now on are sent again (call before claiming)."""
    with contextlib.suppress(Exception):
        cache.delete(_pending_key(task_name))


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("CELERY_BROKER_URL", "KICK_BROKER_TIMEOUT", "KICK_BACKOFF_SECONDS"):
        dispatcher.reset()


setting_changed.connect(_on_setting_changed)


@contextmanager
def stats_delta() -> Iterator[KickStats]:
    """The kicks counted while the block ran (tests)."""
    before = KickStats(**vars(dispatcher.stats))
    delta = KickStats()
    yield delta
    for name in ("queued", "sent", "failed", "dropped", "coalesced"):
        setattr(delta, name, getattr(dispatcher.stats, name) - getattr(before, name))
    delta.last_error = dispatcher.stats.last_error


def _send(task_name: str, arg: str, countdown: float | None = None) -> None:
    try:
        dispatcher.submit(task_name, arg, countdown)
    except Exception as exc:  # never fail a committed request
        logger.warning("could not queue kick %s(%s): %s", task_name, arg, exc.__class__.__name__)


def kick(resource: models.Model) -> None:
    """Ask the reconciler to look at this resource row once the current transaction commits."""
    if not settings.RECONCILE_KICK_ON_COMMIT:
        return
    task_name, pk = task_for(resource), str(resource.pk)
    transaction.on_commit(lambda: _send(task_name, pk))


def kick_kubeconfig_check(user_id: object) -> None:
    # Always sent, even with kicks off: the check is not swept as often as resources are.
    transaction.on_commit(lambda: _send(KUBECONFIG_CHECK, str(user_id)))


def send_later(task_name: str, arg: str, delay: float) -> None:
    """Used by the reconciler itself (outside transactions) to come back to a row soon."""
    if settings.RECONCILE_KICK_ON_COMMIT:
        _send(task_name, arg, countdown=delay if delay > 0 else None)


def send_now(task_name: str, arg: str = "") -> None:
    """Used by the reconciler (outside transactions) when more rows are due than it claimed."""
    if settings.RECONCILE_KICK_ON_COMMIT:
        _send(task_name, arg)


def send(task_name: str, arg: str) -> None:
    """Queue a task now, from a web request (non-blocking, never raises): e.g. a diagnostics refresh."""
    _send(task_name, arg)
